"""Resuming a run where it stopped: the same CSV log and W&B run, the RNG states, no step logged twice.

A checkpoint carries, under checkpoint["lit_llm"]["run"], the CSV log version and the W&B run id; the
CLI reads them back before it builds the loggers. The CSV file then continues: rows logged after the
checkpoint (by a run that was killed later) are dropped, and the resumed run appends from there.
"""

from __future__ import annotations

import csv
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from lit_llm.errors import LitLLMError


def newest_last_checkpoint(directory: str | Path) -> Path | None:
    """The newest last*.ckpt in directory, as Lightning's --ckpt_path last picks it."""
    candidates = list(Path(directory).glob("last*.ckpt"))
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None


def load_checkpoint_lazily(path: str | Path) -> dict:
    """A checkpoint's contents, memory-mapped (tensors are read only if used), plain types only."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except FileNotFoundError:
        raise LitLLMError(f"checkpoint {path} not found") from None
    except Exception as err:
        raise LitLLMError(f"cannot read checkpoint {path} ({err.__class__.__name__}); is it truncated?") from None


def read_checkpoint_meta(path: str | Path) -> dict:
    """global_step and lit_llm's run facts of a checkpoint (plain types only)."""
    ckpt = load_checkpoint_lazily(path)
    extra = ckpt.get("lit_llm", {})
    return {"global_step": int(ckpt.get("global_step", 0)), "pending_row": extra.get("pending_row"),
            "lit_llm": extra, **extra.get("run", {})}


class AppendingWriter(ExperimentWriter):
    """Continues an existing metrics.csv instead of deleting it (Lightning's writer deletes it), keeping
    only the rows logged before `resume_step`."""

    resume_step: int | None = None
    pending_row: dict | None = None  # the checkpoint's own step row, if the kill came before its write

    def _check_log_dir_exists(self) -> None:
        path = Path(self.metrics_file_path)
        if not path.is_file():
            return
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            keys = list(reader.fieldnames or [])
            rows = [r for r in reader if self.resume_step is None or int(float(r["step"])) < self.resume_step]
        pending = self.pending_row
        if pending and not any(int(float(r["step"])) == pending["step"] and r.get(k) for r in rows
                               for k in pending["metrics"]):
            keys = sorted(set(keys) | set(pending["metrics"]) | {"step", "epoch"})
            rows.append({**pending["metrics"], "step": pending["step"], "epoch": pending["epoch"]})
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)
        self.metrics_keys = keys


class ResumableCSVLogger(CSVLogger):
    """CSVLogger that flushes every logged row (so a kill loses none) and, given resume_step, appends to
    its version's metrics.csv after dropping rows from resume_step on."""

    def __init__(self, *args, resume_step: int | None = None, pending_row: dict | None = None, **kwargs) -> None:
        kwargs.setdefault("flush_logs_every_n_steps", 1)
        super().__init__(*args, **kwargs)
        self.resume_step, self.pending_row = resume_step, pending_row

    @property
    @rank_zero_experiment  # as Lightning's CSVLogger: other ranks get a no-op (two ranks rewrote metrics.csv)
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            writer_cls = type("Writer", (AppendingWriter,), {"resume_step": self.resume_step,
                                                             "pending_row": self.pending_row})
            self._experiment = writer_cls(log_dir=self.log_dir) if self.resume_step is not None \
                else ExperimentWriter(log_dir=self.log_dir)
        return self._experiment


def rng_state() -> dict:
    """This process's RNG states as plain types (checkpoints load with weights_only=True)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


RESUME_WAIT_ENV = "LIT_LLM_WANDB_RESUME_WAIT"


def run_dirs(wandb_dir: Path, run_id: str) -> set[Path]:
    """W&B's directories of run_id (offline-run-<time>-<id> and run-<time>-<id>) under wandb_dir."""
    return set(wandb_dir.glob(f"offline-run-*-{run_id}")) | set(wandb_dir.glob(f"run-*-{run_id}"))


def holds_run_data(run_dir: Path) -> bool:
    """Whether a W&B run directory holds anything of the run: a non-empty .wandb file or a run file.
    (A failed start leaves the directory skeleton and its own debug logs only.)"""
    if any(p.stat().st_size for p in run_dir.glob("*.wandb")):
        return True
    return any(p.is_file() for p in (run_dir / "files").rglob("*"))


class ResumableWandbLogger(WandbLogger):
    """WandbLogger that, resuming a run id, waits for a crashed job's W&B service to let go of the id
    (it lingers a few seconds after its process was killed), then falls back to a new run with a warning.
    The wait is bounded: LIT_LLM_WANDB_RESUME_WAIT seconds (default 60) of retries, one every 5 s. Each
    failed attempt leaves a run directory of the same id without data; those this process created are
    removed (directories of the id that existed before, or that hold data, are never touched)."""

    retry_seconds = 60.0
    retry_interval = 5.0

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self._wandb_init.get("anonymous") is None:  # W&B warns about the setting even when it is None
            self._wandb_init.pop("anonymous", None)

    @property
    def experiment(self):
        if self._experiment is not None or not self._wandb_init.get("id"):
            return super().experiment
        try:
            wait = float(os.environ.get(RESUME_WAIT_ENV, self.retry_seconds))
        except ValueError:
            raise LitLLMError(f"{RESUME_WAIT_ENV} must be a number of seconds, got "
                              f"{os.environ[RESUME_WAIT_ENV]!r}") from None
        deadline = time.monotonic() + wait
        run_id = self._wandb_init["id"]
        wandb_dir = Path(self._wandb_init.get("dir") or self.save_dir or ".") / "wandb"
        while True:
            before = run_dirs(wandb_dir, run_id)
            try:
                return super().experiment
            except Exception as err:
                if "in use" not in str(err):
                    raise
                self._remove_failed_attempts(run_dirs(wandb_dir, run_id) - before)
                if time.monotonic() >= deadline:
                    print(f"lit-llm: warning: W&B run {run_id} is still held by another process after {wait:.0f} s "
                          f"({RESUME_WAIT_ENV}); logging to a new W&B run", file=sys.stderr)
                    self._wandb_init.pop("id")
                    self._wandb_init.pop("resume", None)
                    self._id = None
                    return super().experiment
                time.sleep(max(0.0, min(self.retry_interval, deadline - time.monotonic())))

    @staticmethod
    def _remove_failed_attempts(created: set[Path]) -> None:
        import shutil

        for run_dir in created:
            if run_dir.is_dir() and not holds_run_data(run_dir):
                shutil.rmtree(run_dir, ignore_errors=True)
