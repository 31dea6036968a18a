"""Run a W&B sweep file offline, one run after another (or N at a time).

`lit-llm sweep FILE [--out DIR] [--count N] [--parallel N] [--dry-run] [--seed S]`: the arguments only;
the sweep itself is lit_llm.studies.sweep.
"""

from __future__ import annotations

from jsonargparse import ArgumentParser

from lit_llm.studies.sweep import SweepRunner


def main(args: list[str]) -> int:
    parser = ArgumentParser(prog="lit-llm sweep", description=__doc__.splitlines()[0])
    parser.add_argument("file", type=str, help="a W&B sweep YAML (sweeps/*.yaml)")
    parser.add_argument("--out", type=str | None, default=None, help="sweep directory (default runs/sweeps/NAME)")
    parser.add_argument("--count", type=int | None, default=None,
                        help="number of runs (random, bayes) or the first N (grid)")
    parser.add_argument("--parallel", type=int, default=1, help="runs at a time")
    parser.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true", help="print the commands only")
    parser.add_argument("--seed", type=int, default=0, help="seed of random search")
    cfg = parser.parse_args(args)
    return SweepRunner(cfg.file, cfg.out, cfg.count, cfg.parallel, cfg.dry_run, cfg.seed).run()
