"""Write one self-contained HTML report (tables, curves, scaling fits, samples) over a tree of runs.

`lit-llm report RUNS_DIR --out DIR [--overwrite] [--bootstrap N]`: the arguments only; the page is
lit_llm.studies.report.
"""

from __future__ import annotations

from jsonargparse import ArgumentParser

from lit_llm.studies.report import REPORT_NAME, write_report


def main(args: list[str]) -> int:
    parser = ArgumentParser(prog="lit-llm report", description=__doc__.splitlines()[0])
    parser.add_argument("runs_dir", type=str, help="a run root, a sweep directory, or any tree of them")
    parser.add_argument("--out", type=str, default="report", help=f"output directory (writes DIR/{REPORT_NAME})")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing report")
    parser.add_argument("--bootstrap", type=int, default=20, help="bootstrap resamples of each sweep's scaling fit")
    cfg = parser.parse_args(args)
    path = write_report(cfg.runs_dir, cfg.out, cfg.overwrite, cfg.bootstrap)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB); open it in any browser, offline")
    return 0
