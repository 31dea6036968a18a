"""Fit scaling laws (Chinchilla, L(N), L(D), isoFLOP) to run summaries, a CSV or a W&B sweep.

`lit-llm scaling fit INPUT --out DIR`: the arguments only; the fits and plots are lit_llm.studies.scaling.
"""

from __future__ import annotations

from jsonargparse import ArgumentParser

from lit_llm.errors import LitLLMError
from lit_llm.studies.scaling import fit_to_dir


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
    parser.add_argument("action", type=str, help="fit")
    parser.add_argument("input", type=str, help="a sweep directory (run summaries), a CSV (N, D, loss), or "
                                                "wandb:ENTITY/PROJECT/SWEEP_ID (online)")
    parser.add_argument("--out", type=str, default="scaling", help="output directory")
    parser.add_argument("--params", type=str, default="non_embedding", help="non_embedding or total")
    parser.add_argument("--metric", type=str, default="val/loss")
    parser.add_argument("--bootstrap", type=int, default=100, help="bootstrap resamples for the CIs")
    parser.add_argument("--budget", type=float | None, default=None, help="FLOPs for the compute-optimal report")
    parser.add_argument("--columns", type=str | None, default=None,
                        help="CSV headers for N, D or C (training FLOPs) and loss, e.g. "
                             "'N=Model Size,C=Training FLOP,loss=loss' (default: columns named N, D or C, loss)")
    cfg = parser.parse_args(args)
    if cfg.action != "fit":
        raise LitLLMError(f"unknown action {cfg.action!r}: use `lit-llm scaling fit INPUT --out DIR`")
    fit_to_dir(cfg.input, cfg.out, cfg.params, cfg.metric, cfg.bootstrap, cfg.budget, parse_columns(cfg.columns))
    return 0
