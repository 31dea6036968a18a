"""The run's loggers: metrics.csv (CSVLogger, continued on resume) and W&B (offline unless logged in), and
what a run tells W&B beyond its metrics: the x-axis of each curve, the code and package versions it
ran with, and the model's size and cost in the run summary.

- Loss, learning-rate, gradient-norm and throughput curves are defined against `tokens_seen`
  (`define_metric(..., step_metric="tokens_seen")`), so runs of different batch sizes line up in the UI;
  every row that carries them also carries `tokens_seen` (validation and test rows included).
- Summaries stay W&B's default (the last value, a plain number): `val/loss` is what sweeps optimise and
  what `lit-llm scaling` reads back, and a `summary="min"` would turn it into `{"min": ...}`. The best
  validation loss goes to its own keys, `best/val_loss` and `best/val_ppl`.
- The config gets `git.commit`, `git.dirty` (of the working directory, when it is a git checkout) and
  `versions.*` (python, torch, lightning, wandb, tokenizers, lit-llm). Nothing is read from the
  environment, so no secret can reach it.
"""

from __future__ import annotations

import csv
import importlib.metadata
import netrc
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import lightning as L
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from lit_llm.errors import LitLLMError
from lit_llm.training.lightning_internals import (ContinuingWriter, csv_experiment, forget_wandb_run_id,
                                                  wandb_init_settings, wandb_run_started)
from lit_llm.training.rundirs import claimed_version

STEP_METRIC = "tokens_seen"
# every metric lit_llm logs against training progress (exact names: they take precedence over
# Lightning's own `define_metric("*", step_metric="trainer/global_step")`)
TOKEN_AXIS_METRICS = (
    "train/loss", "train/ppl", "val/loss", "val/ppl", "test/loss", "test/ppl", "lr", "grad_norm",
    "train/tokens_per_sec", "train/tokens_per_sec_per_device", "train/tflops_per_device", "train/mfu",
    "val/mlm_acc", "test/mlm_acc", "pruning/sparsity", "samples",
)
PACKAGES = {"torch": "torch", "lightning": "lightning", "wandb": "wandb", "tokenizers": "tokenizers",
            "lit_llm": "lit-llm"}


def git_facts(cwd: str | None = None, timeout: float = 5.0) -> dict:
    """{"git.commit", "git.dirty"} of the checkout holding cwd; {} outside one or without git."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return {}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git.commit": commit, "git.dirty": bool(status) if status is not None else None}


def package_versions() -> dict:
    versions = {"versions.python": platform.python_version()}
    for key, dist in PACKAGES.items():
        try:
            versions[f"versions.{key}"] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[f"versions.{key}"] = None
    return versions


def run_facts() -> dict:
    """The code and environment a run used, as flat config entries."""
    return {**git_facts(), **package_versions()}


def wandb_loggers(trainer: L.Trainer) -> list[WandbLogger]:
    """The trainer's W&B loggers on the rank that owns the W&B run (none on other ranks)."""
    if not trainer.is_global_zero:
        return []
    return [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]


def define_metrics(run) -> None:
    run.define_metric(STEP_METRIC)
    for name in TOKEN_AXIS_METRICS:
        run.define_metric(name, step_metric=STEP_METRIC, step_sync=True)


@dataclass
class WandbOptions:
    project: str = "lit-llm"
    """W&B project."""
    name: str | None = None
    """Run name (default: W&B's)."""
    group: str | None = None
    """Run group, e.g. a sweep or experiment name."""
    mode: Literal["auto", "offline", "online", "disabled"] = "auto"
    """auto: online when WANDB_MODE=online or an API key is configured, else offline; disabled: no W&B."""
    tags: list[str] | None = None
    """Run tags, e.g. '[baseline, rope]'."""
    log_model: bool | Literal["all"] = False
    """Upload checkpoints as W&B artifacts (online only): true = at the end, all = every checkpoint."""


def wandb_has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_wandb_mode(mode: str) -> str:
    if mode == "auto":
        env = os.environ.get("WANDB_MODE", "")
        if env in ("offline", "disabled", "online"):
            mode = env
        else:
            mode = "online" if wandb_has_credentials() else "offline"
    if mode == "online" and not wandb_has_credentials():
        print("lit-llm: warning: W&B online requested without credentials; logging offline "
              "(`wandb login`, then `wandb sync` the run)", file=sys.stderr)
        mode = "offline"
    return mode


def finish_wandb() -> None:
    """End this process's W&B run, if it has one (WandbLogger never does), so its service exits."""
    if "wandb" in sys.modules:  # only when a run used W&B
        import wandb

        if wandb.run is not None:
            wandb.finish()


VERSION_ENV = "LIT_LLM_CSV_VERSION"  # the version rank zero claimed, for the ranks Lightning launches from it


def launched_as_rank_zero() -> bool:
    """Rank zero of the job, from the launchers' environment (the process group does not exist yet)."""
    return all(os.environ.get(var, "0") == "0" for var in ("RANK", "NODE_RANK", "LOCAL_RANK", "SLURM_PROCID"))


def claim_version(root: str, name: str = "lightning_logs") -> int:
    """The next free version_N under root/name, created with an atomic mkdir: two fits started at once in
    one root never share a log directory."""
    base = Path(root) / name
    base.mkdir(parents=True, exist_ok=True)
    taken = [int(n) for p in base.glob("version_*") if (n := p.name.removeprefix("version_")).isdigit()]
    version = max(taken, default=-1) + 1
    while True:
        try:
            (base / f"version_{version}").mkdir()
            claimed_version(base / f"version_{version}")
            return version
        except FileExistsError:  # another fit took it meanwhile
            version += 1


def make_loggers(root: str, opts: WandbOptions, resume: dict | None = None) -> list:
    """CSV (first: its directory is trainer.log_dir) and W&B; resume continues a checkpoint's logs."""
    resume = resume or {}
    csv_version = resume.get("csv_version")
    if csv_version is None:
        if os.environ.get(VERSION_ENV):  # a rank Lightning launched: the version rank zero claimed
            csv_version = int(os.environ[VERSION_ENV])
        elif launched_as_rank_zero():
            csv_version = claim_version(root)
            os.environ[VERSION_ENV] = str(csv_version)  # inherited by the ranks Lightning launches
    loggers = [ResumableCSVLogger(save_dir=root, name="lightning_logs", version=csv_version,
                                  resume_step=resume.get("global_step") if csv_version is not None else None,
                                  pending_row=resume.get("pending_row"))]
    mode = resolve_wandb_mode(opts.mode)
    if mode != "disabled":
        wandb_id = resume.get("wandb_id")
        log_model = opts.log_model
        if log_model and mode == "offline":  # W&B refuses artifacts offline
            print("lit-llm: warning: --wandb.log_model needs W&B online; checkpoints are not uploaded", file=sys.stderr)
            log_model = False
        # absolute: W&B's background service may run in another working directory. Under `wandb agent`
        # W&B groups the run by its sweep: a group is passed only when one is given.
        loggers.append(ResumableWandbLogger(save_dir=os.path.abspath(root), project=opts.project, name=opts.name,
                                   group=opts.group, tags=opts.tags, log_model=log_model,
                                   offline=mode == "offline", id=wandb_id, resume="allow" if wandb_id else None))
    return loggers


def continue_metrics_file(path: str, resume_step: int, pending: dict | None) -> list[str] | None:
    """Rewrite an existing metrics.csv for a resume: keep the rows logged before resume_step (a killed run
    may have logged past its last checkpoint), add the checkpoint's own step row if it never got written.
    Returns the column names, or None when there is no file yet."""
    file = Path(path)
    if not file.is_file():
        return None
    with open(file, newline="") as f:
        reader = csv.DictReader(f)
        keys = list(reader.fieldnames or [])
        rows = [r for r in reader if int(float(r["step"])) < resume_step]
    if pending and not any(int(float(r["step"])) == pending["step"] and r.get(k) for r in rows
                           for k in pending["metrics"]):
        keys = sorted(set(keys) | set(pending["metrics"]) | {"step", "epoch"})
        rows.append({**pending["metrics"], "step": pending["step"], "epoch": pending["epoch"]})
    tmp = file.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, file)
    return keys


class ResumableCSVLogger(CSVLogger):
    """CSVLogger that flushes every logged row (so a kill loses none) and, given resume_step, continues
    its version's metrics.csv from there instead of deleting it."""

    def __init__(self, *args, resume_step: int | None = None, pending_row: dict | None = None, **kwargs) -> None:
        kwargs.setdefault("flush_logs_every_n_steps", 1)
        super().__init__(*args, **kwargs)
        self.resume_step, self.pending_row = resume_step, pending_row

    @property
    @rank_zero_experiment  # as Lightning's CSVLogger: other ranks get a no-op (two ranks rewrote metrics.csv)
    def experiment(self):
        def make_writer(log_dir: str):
            if self.resume_step is None:
                return ExperimentWriter(log_dir=log_dir)
            return ContinuingWriter(log_dir, lambda path: continue_metrics_file(path, self.resume_step,
                                                                                self.pending_row))
        return csv_experiment(self, make_writer)


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
        init = wandb_init_settings(self)
        if init.get("anonymous") is None:  # W&B warns about the setting even when it is None
            init.pop("anonymous", None)

    @property
    def experiment(self):
        init = wandb_init_settings(self)
        if wandb_run_started(self) or not init.get("id"):
            return super().experiment
        try:
            wait = float(os.environ.get(RESUME_WAIT_ENV, self.retry_seconds))
        except ValueError:
            raise LitLLMError(f"{RESUME_WAIT_ENV} must be a number of seconds, got "
                              f"{os.environ[RESUME_WAIT_ENV]!r}") from None
        deadline = time.monotonic() + wait
        run_id = init["id"]
        wandb_dir = Path(init.get("dir") or self.save_dir or ".") / "wandb"
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
                    forget_wandb_run_id(self)
                    return super().experiment
                time.sleep(max(0.0, min(self.retry_interval, deadline - time.monotonic())))

    @staticmethod
    def _remove_failed_attempts(created: set[Path]) -> None:
        for run_dir in created:
            if run_dir.is_dir() and not holds_run_data(run_dir):
                shutil.rmtree(run_dir, ignore_errors=True)
