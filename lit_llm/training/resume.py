"""Exact resume: the one owner of what a fit needs, besides what Lightning already saves, to continue after
a stop or a kill exactly as if it had never stopped. The sequence is drawn in docs/resume.md.

Saved by Lightning itself: weights, optimizer and LR-schedule state, loop counters, and the data position
(TextDataModule.state_dict: micro-batches consumed; the sampler is stateless given it).
Saved here (ResumeState, a callback with state_dict/load_state_dict, on every rank):
- every rank's RNG states (dropout), restored just before the first resumed training step: building
  the data iterators in between draws from the RNG;
- the CSV log version and the W&B run id, which the CLI reads back (`resume_facts`) before it builds the
  loggers, so the same metrics.csv and the same W&B run continue;
- the checkpoint's own step row: Lightning saves a checkpoint before it writes that step's metrics, so
  a kill in between would lose the row; the resumed CSV logger writes it;
- and, at the first resumed step, Lightning's log-step counter is set to global_step (it counts the
  checkpoint's step once more, which would log a step twice).
"""

from __future__ import annotations

import random
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger, WandbLogger

from lit_llm.checkpoints import newest_last_checkpoint, read_checkpoint
from lit_llm.training.lightning_internals import (log_step, pending_step_metrics, set_log_step, should_log,
                                                  wandb_run_started)

STATE_KEY = "ResumeState"


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



class ResumeState(Callback):
    def __init__(self) -> None:
        self.trainer: L.Trainer | None = None
        self.pending_rng: dict | None = None
        self.realign_log_step = False

    @property
    def state_key(self) -> str:
        return STATE_KEY

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.trainer = trainer

    def state_dict(self) -> dict:
        rng = [rng_state()]
        if dist.is_available() and dist.is_initialized():  # every rank's, so each resumes its own
            rng = [None] * dist.get_world_size()
            dist.all_gather_object(rng, rng_state())
        trainer = self.trainer
        return {"rng": rng, **(run_ids(trainer) if trainer else {}),
                "pending_row": pending_row(trainer) if trainer else None}

    def load_state_dict(self, state_dict: dict) -> None:
        rng, trainer = state_dict.get("rng"), self.trainer
        if rng and trainer is not None and trainer.state.fn == "fit":
            rank = trainer.global_rank
            self.pending_rng = rng[rank] if rank < len(rng) else rng[0]

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.realign_log_step = True

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if self.realign_log_step:
            set_log_step(trainer, trainer.global_step)
            self.realign_log_step = False
        if self.pending_rng is not None:
            set_rng_state(self.pending_rng)
            self.pending_rng = None


def run_ids(trainer: L.Trainer) -> dict:
    """The CSV log version and W&B run id, so a resumed fit continues the same logs."""
    ids = {}
    for logger in trainer.loggers:
        if isinstance(logger, CSVLogger):
            ids["csv_version"] = logger.version
        elif isinstance(logger, WandbLogger) and wandb_run_started(logger):
            ids["wandb_id"] = logger.experiment.id
    return ids


def pending_row(trainer: L.Trainer) -> dict | None:
    """The metrics row of a checkpoint taken at the end of a logged training step, not yet written."""
    if not trainer.training or not should_log(trainer):
        return None
    metrics = pending_step_metrics(trainer)
    return {"step": log_step(trainer), "epoch": trainer.current_epoch, "metrics": metrics} if metrics else None


def resume_facts(ckpt_path: str | None, checkpoint_dir: str | None, data_key: str | None = None) -> dict | None:
    """What the checkpoint a fit resumes from says about the run (None for a fresh fit): global_step,
    csv_version, wandb_id, pending_row, the module's "lit_llm" entry for the compatibility check, and the
    data module's state (Lightning saves it under the class name, data_key) as data_position."""
    if not ckpt_path or ckpt_path in ("best", "hpc") or "://" in ckpt_path:
        return None
    path = newest_last_checkpoint(checkpoint_dir) if ckpt_path == "last" and checkpoint_dir else (
        None if ckpt_path == "last" else Path(ckpt_path))
    if path is None:
        return None
    ckpt = read_checkpoint(path)
    state = ckpt.get("callbacks", {}).get(STATE_KEY, {})
    return {"global_step": int(ckpt.get("global_step", 0)), "lit_llm": ckpt.get("lit_llm", {}),
            "data_position": ckpt.get(data_key, {}) if data_key else {},
            **{k: state.get(k) for k in ("csv_version", "wandb_id", "pending_row")}}
