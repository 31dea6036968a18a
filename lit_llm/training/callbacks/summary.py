"""What a run reports about itself: summary.json in its log directory (RunSummary), and the W&B run's
summary and metric axes (WandbRun). Both take the model's size and cost from `model_facts`."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger

from lit_llm.model.build import params_with_head
from lit_llm.training.callbacks.throughput import Throughput
from lit_llm.training.lightning_internals import wandb_run_started
from lit_llm.training.loggers import define_metrics, wandb_loggers


def model_facts(pl_module: L.LightningModule) -> dict:
    """Parameters (all, without embeddings, and without embeddings but with the output head), training FLOPs
    per token, tokens seen and FLOPs so far."""
    tokens = int(getattr(pl_module, "tokens_seen", 0))
    with_head = {}
    if hasattr(pl_module, "network"):  # a language model: N with the head, and the shape a size rule gave
        config = pl_module.config
        with_head = {"params_with_head": params_with_head(pl_module.network(), config), "n_layer": config.n_layer,
                     "n_embd": config.n_embd}
    return {"params": pl_module.num_params(non_embedding=False),
            "params_non_embedding": pl_module.num_params(non_embedding=True), **with_head,
            "flops_per_token": pl_module.flops_per_token(), "tokens_seen": tokens,
            "flops": pl_module.flops_per_token() * tokens}


def plain(value):
    """A JSON-safe copy of config values."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    return str(value)


class RunSummary(Callback):
    """Writes summary.json in the run's log directory after fit, validate and test: config, parameter
    counts, tokens, FLOPs, final metrics and throughput, for `lit-llm scaling` and reports."""

    def __init__(self, throughput: Throughput | None = None) -> None:
        self.throughput = throughput  # its run averages go into the summary
        self.config: dict = {}  # the flat run config, set by the CLI's LoggedConfig
        self.start = time.time()
        self.written: dict | None = None  # the latest summary written (rank zero)

    def on_fit_start(self, trainer, pl_module) -> None:
        self.start = time.time()

    def _write(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        log_dir = trainer.log_dir  # a collective under DDP: every rank must ask
        if trainer.global_rank != 0 or log_dir is None:
            return
        path = Path(log_dir) / "summary.json"
        summary = json.loads(path.read_text()) if path.exists() else {}
        metrics = {k: plain(v) for k, v in trainer.callback_metrics.items()}
        meter = self.throughput
        throughput = {**meter.latest, **meter.run_average()} if meter else {}
        summary.update({
            "config": self.config or summary.get("config", {}),
            **model_facts(pl_module),
            "global_step": trainer.global_step,
            "world_size": trainer.world_size,
            "precision": str(trainer.precision),
        })
        summary.setdefault("metrics", {}).update(metrics)
        for key in ("val/loss", "val/ppl", "test/loss", "test/ppl"):
            if key in metrics:
                summary[key] = metrics[key]
        if stage == "fit":
            epochs = getattr(trainer.datamodule, "epochs_done", lambda: None)()
            if epochs is not None:  # an epoch fit: passes over the training data, whole and in all
                summary["epochs_completed"], summary["epochs"] = int(epochs), round(epochs, 4)
            train_tokens = getattr(trainer.datamodule, "train_tokens", lambda: None)()
            if train_tokens:  # tokens trained on / the train split's: above 1, some data was seen again
                summary["data_passes"] = round(summary["tokens_seen"] / train_tokens, 4)
            # the last window's figures, and the mean over the run (validation and start-up left out)
            summary["throughput"] = {k.split("/", 1)[-1]: v for k, v in throughput.items()}
            summary["train_seconds"] = round(time.time() - self.start, 2)  # the whole fit, validation included
            ckpt = trainer.checkpoint_callback
            if ckpt is not None:
                summary["checkpoints"] = {"last": ckpt.last_model_path, "best": ckpt.best_model_path}
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger) and wandb_run_started(logger):
                summary["wandb"] = {"id": logger.experiment.id, "dir": logger.experiment.dir}
        self.written = {**summary, "path": str(path)}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(summary, indent=2))
        os.replace(tmp, path)

    def on_fit_end(self, trainer, pl_module) -> None:
        self._write(trainer, pl_module, "fit")

    def closing_block(self) -> str:
        """What a finished fit tells its user: the result, where everything is, what to run next."""
        s = self.written
        if not s or "train_seconds" not in s:
            return ""
        ckpt = s.get("checkpoints", {})
        lines = [f"lit-llm: fit finished at step {s['global_step']} in {s['train_seconds']:.0f} s"]
        if "val/loss" in s:
            lines[0] += f": val/loss {s['val/loss']:.4f}, val/ppl {s['val/ppl']:.2f}"
        lines += [f"  checkpoint  {ckpt.get('last') or '-'}"
                  + (f"  (best: {Path(ckpt['best']).name})" if ckpt.get("best") else ""),
                  f"  metrics     {Path(s['path']).parent / 'metrics.csv'}  (and summary.json beside it)"]
        if s.get("wandb"):
            lines.append(f"  W&B run     {Path(s['wandb']['dir']).parent}  (offline runs: `wandb sync` it to upload)")
        if ckpt.get("last") and s.get("config", {}).get("model.objective", "causal") == "causal":
            lines.append(f"  next        lit-llm generate --checkpoint {ckpt['last']} --prompt \"...\"")
        return "\n".join(lines)

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "validate":
            self._write(trainer, pl_module, "validate")

    def on_test_end(self, trainer, pl_module) -> None:
        self._write(trainer, pl_module, "test")


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
        # the facts `lit-llm scaling` needs, also in the W&B run summary (read back through W&B's API)
        facts = model_facts(pl_module)
        if self.best_val_loss is not None:
            facts["best/val_loss"] = self.best_val_loss
            facts["best/val_ppl"] = math.exp(self.best_val_loss)
        for logger in loggers:
            logger.experiment.summary.update(facts)

    def state_dict(self) -> dict:
        return {"best_val_loss": self.best_val_loss}

    def load_state_dict(self, state_dict: dict) -> None:
        self.best_val_loss = state_dict.get("best_val_loss")
