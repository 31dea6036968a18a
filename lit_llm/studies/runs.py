"""Reading what runs wrote: the one reader of run outputs for sweep, scaling and report.

A run's log directory (`lightning_logs/version_N/`) holds `summary.json` (written after fit, validate and
test), `metrics.csv`, the samples `samples.jsonl`/`predictions.jsonl` and, with --model.loss_by_position,
`loss_by_position.csv` (the last validation's mean loss at each position of the context); a sweep directory holds
`sweep-state.json` (written by `lit-llm sweep`) beside one root per run; a study directory (`lit-llm scaling study`)
holds `study.json` beside its sweeps. Only this module knows those names and how a fit's summary differs from that of a `validate`/`test` of a checkpoint.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from lit_llm.errors import LitLLMError

SUMMARY = "summary.json"
METRICS = "metrics.csv"
LOSS_BY_POSITION = "loss_by_position.csv"  # columns position, loss, tokens
SWEEP_STATE = "sweep-state.json"
STUDY = "study.json"  # written by `lit-llm scaling study` beside its sweeps (fit/fit.json, report.md)


# --- summaries ------------------------------------------------------------------------------------
def is_fit(summary: dict) -> bool:
    """Whether a summary is a fit's, not one of a `validate`/`test` of a checkpoint (which would count
    that run's point again). lit_llm writes `train_seconds` only after a fit; a summary without
    `flops_per_token` was not written by lit_llm (hand-made, e.g. from published runs) and counts as a fit."""
    return "train_seconds" in summary or "flops_per_token" not in summary


def read_summary(log_dir: Path) -> dict | None:
    """The summary in a log directory, or None when there is none or it is unreadable (killed, running)."""
    try:
        summary = json.loads((Path(log_dir) / SUMMARY).read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def fit_summaries(root: Path) -> list[tuple[Path, dict]]:
    """(log directory, summary) of every readable fit summary at any depth under root, sorted by path."""
    found = ((path.parent, read_summary(path.parent)) for path in sorted(Path(root).rglob(SUMMARY)))
    return [(log_dir, s) for log_dir, s in found if s is not None and is_fit(s)]


def latest_summary(run_root: Path) -> tuple[Path, dict] | None:
    """The readable summary of the highest `lightning_logs/version_N` of a run root (version_10 after
    version_9), or None."""
    def version(path: Path) -> tuple[int, str]:
        number = path.parent.name.rsplit("_", 1)[-1]
        return (int(number) if number.isdigit() else -1, path.parent.name)

    for path in sorted(Path(run_root).glob(f"lightning_logs/*/{SUMMARY}"), key=version, reverse=True):
        if (summary := read_summary(path.parent)) is not None:
            return path, summary
    return None


# --- metrics and samples --------------------------------------------------------------------------
def read_metrics(path: Path) -> list[dict[str, float]]:
    """The rows of a metrics.csv as numbers; empty cells (a metric not logged at that step) left out."""
    if not path.exists():
        return []
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            rows.append({k: number for k, v in row.items() if (number := _number(v)) is not None})
    return rows


def _number(text) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None  # an empty cell (the metric was not logged at that step) or not a number


def read_jsonl(path: Path) -> list[dict]:
    """The objects of a JSON-lines file (samples.jsonl, predictions.jsonl); a line cut short is skipped."""
    items = []
    for line in path.read_text().splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue  # a line cut short by a kill
        if isinstance(item, dict):
            items.append(item)
    return items


# --- sweeps ---------------------------------------------------------------------------------------
def read_sweep_state(sweep_dir: Path) -> dict:
    """The state `lit-llm sweep` keeps in DIR/sweep-state.json: {"sweep": the file, "runs": [...]}."""
    path = Path(sweep_dir) / SWEEP_STATE
    try:
        state = json.loads(path.read_text())
    except OSError as err:
        raise LitLLMError(f"cannot read {path}: {err.strerror}") from None
    except ValueError:
        raise LitLLMError(f"{path} is damaged (not JSON): move it away to start the sweep afresh") from None
    if not isinstance(state, dict):
        raise LitLLMError(f"{path} is not a sweep state (not a JSON object)")
    return state


def find_sweeps(root: Path) -> list[Path]:
    """Every sweep directory (holding sweep-state.json) at any depth under root, sorted."""
    return sorted(p.parent for p in Path(root).rglob(SWEEP_STATE))


def sweep_name(sweep_dir: Path) -> str:
    """The sweep's `name:`, else its directory's name."""
    try:
        return str(read_sweep_state(sweep_dir)["sweep"].get("name") or sweep_dir.resolve().name)
    except (LitLLMError, KeyError, TypeError, AttributeError):
        return sweep_dir.resolve().name


def sweep_params(root: Path) -> dict[str, dict]:
    """Run root directory -> the parameters `lit-llm sweep` gave it."""
    params = {}
    for sweep in find_sweeps(root):
        try:
            for run in read_sweep_state(sweep).get("runs", []):
                params[str((sweep / run["id"]).resolve())] = run.get("params", {})
        except (LitLLMError, KeyError, TypeError, AttributeError):
            continue  # a damaged state file only loses the parameter column
    return params


# --- runs -----------------------------------------------------------------------------------------
@dataclass
class Run:
    label: str
    log_dir: Path
    summary: dict
    rows: list[dict[str, float]] = field(default_factory=list)  # metrics.csv, empty cells left out
    sweep_params: dict = field(default_factory=dict)
    positions: list[dict[str, float]] = field(default_factory=list)  # loss_by_position.csv (val), if any

    @property
    def is_fit(self) -> bool:
        return is_fit(self.summary)


def find_runs(root: Path) -> tuple[list[Run], list[str]]:
    """Every run under root (sorted by path), and the log directories skipped (no or unreadable summary)."""
    params = sweep_params(root)
    found, skipped = [], []
    for log_dir in sorted({p.parent for p in root.rglob(METRICS)} | {p.parent for p in root.rglob(SUMMARY)}):
        rel = log_dir.relative_to(root).as_posix()
        summary = read_summary(log_dir)
        if summary is None:
            skipped.append(rel)  # killed or still running: no summary yet
            continue
        run_root = log_dir.parent.parent if log_dir.parent.name == "lightning_logs" else log_dir
        inside = root in run_root.parents  # not when RUNS_DIR is the log directory itself
        name = run_root.relative_to(root).as_posix() if inside else run_root.resolve().name
        found.append((run_root, log_dir, Run(name, log_dir, summary, read_metrics(log_dir / METRICS),
                                              params.get(str(run_root.resolve()), {}),
                                              read_metrics(log_dir / LOSS_BY_POSITION))))
    roots = [r for r, _, _ in found]
    for run_root, log_dir, run in found:
        if roots.count(run_root) > 1:  # several fits in one root: name the version
            run.label += f" v{log_dir.name.rsplit('_', 1)[-1]}"
    return [run for _, _, run in found], skipped
