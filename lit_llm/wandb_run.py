"""What a run tells W&B beyond its metrics: the x-axis of each curve, the code and package versions it
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

import importlib.metadata
import platform
import subprocess

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger

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


class WandbRun(Callback):
    """Defines the metrics' x-axis when the W&B run starts and keeps its summary's size and cost facts
    (parameters, FLOPs per token, tokens, FLOPs) and the best validation loss current. Does nothing
    without a W&B logger."""

    def __init__(self) -> None:
        self.best_val_loss: float | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for logger in wandb_loggers(trainer):
            define_metrics(logger.experiment)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._update_summary(trainer, pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        loss = trainer.callback_metrics.get("val/loss")
        if loss is not None and (self.best_val_loss is None or float(loss) < self.best_val_loss):
            self.best_val_loss = float(loss)
        self._update_summary(trainer, pl_module)

    def _update_summary(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loggers = wandb_loggers(trainer)
        if not loggers or getattr(pl_module, "model", None) is None:
            return
        tokens = int(getattr(pl_module, "tokens_seen", 0))
        facts = {
            "params": pl_module.num_params(non_embedding=False),
            "params_non_embedding": pl_module.num_params(non_embedding=True),
            "flops_per_token": pl_module.flops_per_token(),
            "tokens_seen": tokens,
            "flops": pl_module.flops_per_token() * tokens,
        }
        if self.best_val_loss is not None:
            import math

            facts["best/val_loss"] = self.best_val_loss
            facts["best/val_ppl"] = math.exp(self.best_val_loss)
        for logger in loggers:
            logger.experiment.summary.update(facts)

    def state_dict(self) -> dict:
        return {"best_val_loss": self.best_val_loss}

    def load_state_dict(self, state_dict: dict) -> None:
        self.best_val_loss = state_dict.get("best_val_loss")
