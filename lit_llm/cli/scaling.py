"""Fit scaling laws (Chinchilla's approaches 1-3, L(N), L(D)) to run summaries, a CSV or a W&B sweep, or run a study.

`lit-llm scaling fit INPUT --out DIR` and `lit-llm scaling study STUDY.yaml --out DIR`: the arguments only; the
fits and plots are lit_llm.studies.scaling, the study lit_llm.studies.study.
"""

from __future__ import annotations

from jsonargparse import ArgumentParser

from lit_llm.errors import LitLLMError
from lit_llm.studies.scaling import PARAMS
from lit_llm.studies.scaling_output import fit_to_dir
from lit_llm.studies.study import Study


def parse_columns(spec: str | None) -> dict[str, str]:
    columns = {}
    for item in filter(None, (spec or "").split(",")):
        role, sep, header = item.partition("=")
        if not sep or role.strip() not in ("N", "D", "C", "loss"):
            raise LitLLMError(f"--columns {spec!r}: give ROLE=HEADER pairs, ROLE one of N, D, C, loss")
        columns[role.strip()] = header.strip()
    return columns


def main(args: list[str]) -> int:
    parser = ArgumentParser(prog="lit-llm scaling", description=__doc__.splitlines()[0])
    parser.add_argument("action", type=str, help="fit (laws from runs) or study (run a study file, then fit)")
    parser.add_argument("input", type=str, nargs="+", help="fit: sweep directories (run summaries), a CSV (N, D, loss), or "
                                                "wandb:ENTITY/PROJECT/SWEEP_ID (online); study: a study file "
                                                "(sweeps/scaling-cpu/study.yaml)")
    parser.add_argument("--out", type=str | None, default=None,
                        help="output directory (default: scaling for fit, runs/studies/NAME for study)")
    parser.add_argument("--params", type=str, default="non_embedding",
                        help=f"N for fit: {', '.join(PARAMS)} (non-embedding + output head; a study's N)")
    parser.add_argument("--parallel", type=int | None, default=None, help="study: runs at a time (default: the file's)")
    parser.add_argument("--metric", type=str, default="val/loss")
    parser.add_argument("--bootstrap", type=int, default=100, help="bootstrap resamples for the CIs")
    parser.add_argument("--budget", type=float | None, default=None, help="FLOPs for the compute-optimal report")
    parser.add_argument("--columns", type=str | None, default=None,
                        help="CSV headers for N, D or C (training FLOPs) and loss, e.g. "
                             "'N=Model Size,C=Training FLOP,loss=loss' (default: columns named N, D or C, loss)")
    cfg = parser.parse_args(args)
    if cfg.action == "study":
        if len(cfg.input) != 1:
            raise LitLLMError(f"`lit-llm scaling study` takes one study file, got {len(cfg.input)}")
        return Study(cfg.input[0], cfg.out, cfg.parallel, cfg.bootstrap).run()
    if cfg.action != "fit":
        raise LitLLMError(f"unknown action {cfg.action!r}: use `lit-llm scaling fit INPUT --out DIR` or "
                          "`lit-llm scaling study STUDY.yaml`")
    fit_to_dir(cfg.input if len(cfg.input) > 1 else cfg.input[0], cfg.out or "scaling", cfg.params, cfg.metric, cfg.bootstrap, cfg.budget,
               parse_columns(cfg.columns))
    return 0
