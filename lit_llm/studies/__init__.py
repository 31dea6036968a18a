"""Studies over many runs: `sweep` runs a W&B sweep file offline (grid, random, bayes; resumable),
`scaling` fits scaling laws (Chinchilla, L(N), L(D), isoFLOP) to the runs' summaries, and `report` writes
one self-contained HTML page over a tree of runs; `runs` is the one reader of what runs wrote (summaries,
metrics.csv, samples, sweep state) that the three share. The package works on run outputs only: it
imports nothing of training (lit_llm.training, cli, module, callbacks), only lit_llm.errors and
third-party packages, and its command lines are parsed elsewhere (lit_llm/cli/sweep.py, scaling.py, report.py).
"""
