"""Callbacks: throughput/MFU, final validation, the run summary JSON, the predictions writer."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, Callback, RichProgressBar
from lightning.pytorch.loggers import WandbLogger

# Dense (no sparsity) peak TFLOP/s per device, from the vendors' spec sheets.
PEAK_TFLOPS = {
    ("h100", "bf16"): 989.0, ("h100", "fp16"): 989.0, ("h100", "tf32"): 494.5, ("h100", "fp32"): 66.9,
    ("h200", "bf16"): 989.0, ("h200", "fp16"): 989.0, ("h200", "tf32"): 494.5, ("h200", "fp32"): 66.9,
    ("a100", "bf16"): 312.0, ("a100", "fp16"): 312.0, ("a100", "tf32"): 156.0, ("a100", "fp32"): 19.5,
    ("l4", "bf16"): 121.0, ("l4", "fp16"): 121.0, ("l4", "fp32"): 30.3,
    ("a10g", "bf16"): 70.0, ("a10g", "fp16"): 70.0, ("a10g", "fp32"): 31.2,
    ("v100", "fp16"): 125.0, ("v100", "fp32"): 15.7,
}


def precision_kind(precision: str) -> str:
    if "bf16" in precision:
        return "bf16"
    if "16" in precision:
        return "fp16"
    return "tf32" if torch.backends.cuda.matmul.allow_tf32 else "fp32"


def measure_cpu_peak_tflops(size: int = 1024, repeats: int = 8) -> float:
    """Best observed fp32 matmul throughput of this CPU, a practical stand-in for its peak."""
    g = torch.Generator().manual_seed(0)  # not the global RNG: the model's init must not depend on this
    a, b = torch.randn(size, size, generator=g), torch.randn(size, size, generator=g)
    a @ b  # warm up the BLAS threads
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best / 1e12


def device_peak_tflops(device: torch.device, precision: str) -> float | None:
    if device.type == "cpu":
        return measure_cpu_peak_tflops()
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device).lower()
        for (chip, kind), tflops in PEAK_TFLOPS.items():
            if chip in name and kind == precision_kind(precision):
                return tflops
    return None


def should_log(trainer: L.Trainer) -> bool:
    """True on the steps whose metrics Lightning writes (log_every_n_steps, and the last step)."""
    return trainer._logger_connector.should_update_logs


class Throughput(Callback):
    """Logs train/tokens_per_sec (all devices), train/tokens_per_sec_per_device, train/tflops_per_device
    and train/mfu on every logging step, averaged over the steps since the previous one
    (--trainer.log_every_n_steps sets the window). The clock is read after a device sync at those steps
    only, so the training loop is not serialised; time spent in validation is left out, and so is the
    first window (start-up). MFU = achieved model FLOP/s per device (see GPT.flops_per_token) / the
    device's dense peak for the precision in use; the per-device figure is never divided by world size."""

    def __init__(self, peak_tflops: float | None = None) -> None:
        """
        Args:
            peak_tflops: the device's peak TFLOP/s for MFU; default: a spec table on GPUs, a matmul
                measurement on CPU.
        """
        self.peak_tflops = peak_tflops
        self.mark: float | None = None  # time of the window's start
        self.tokens = 0  # tokens per device since the mark
        self.warm = False
        self.latest: dict[str, float] = {}
        self.total_tokens, self.total_seconds = 0, 0.0  # over all measured windows, for the run summary

    def run_average(self) -> dict[str, float]:
        if not self.total_seconds:
            return {}
        return {"tokens_per_sec_per_device_mean": self.total_tokens / self.total_seconds}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.peak_tflops is None and stage == "fit":
            self.peak_tflops = device_peak_tflops(trainer.strategy.root_device, str(trainer.precision))

    def _now(self, trainer: L.Trainer) -> float:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_train_start(self, trainer, pl_module) -> None:
        self.mark, self.tokens, self.warm = self._now(trainer), 0, False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        tokens = batch["tokens"]
        self.tokens += tokens.size(0) * (tokens.size(1) - 1)
        if trainer.fit_loop._should_accumulate() or not should_log(trainer):
            return
        now = self._now(trainer)
        if self.warm and self.mark is not None:
            per_device = self.tokens / (now - self.mark)
            self.total_tokens += self.tokens
            self.total_seconds += now - self.mark
            tflops = per_device * pl_module.flops_per_token() / 1e12
            self.latest = {
                "train/tokens_per_sec": per_device * trainer.world_size,
                "train/tokens_per_sec_per_device": per_device,
                "train/tflops_per_device": tflops,
            }
            if self.peak_tflops:
                self.latest["train/mfu"] = tflops / self.peak_tflops
            pl_module.log_dict(self.latest)
        self.mark, self.tokens, self.warm = now, 0, True

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self.mark, self.tokens = self._now(trainer), 0  # validation is not training time


class FinalValidation(Callback):
    """Every fit ends with a validation and a last checkpoint at its final step: stopping at max_steps
    through trainer.should_stop makes Lightning validate there even off the val_check_interval grid, and
    last.ckpt is written at the end if ModelCheckpoint's own cadence (e.g. every_n_train_steps) missed it."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps:
            trainer.should_stop = True

    def on_train_end(self, trainer, pl_module) -> None:
        ckpt = trainer.checkpoint_callback
        if ckpt is not None and ckpt.save_last and ckpt._last_global_step_saved != trainer.global_step:
            ckpt._save_last_checkpoint(trainer, ckpt._monitor_candidates(trainer))


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

    def __init__(self) -> None:
        self.config: dict = {}  # set by the CLI
        self.start = time.time()

    def on_fit_start(self, trainer, pl_module) -> None:
        self.start = time.time()

    def _write(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        log_dir = trainer.log_dir  # a collective under DDP: every rank must ask
        if trainer.global_rank != 0 or log_dir is None:
            return
        path = Path(log_dir) / "summary.json"
        summary = json.loads(path.read_text()) if path.exists() else {}
        metrics = {k: plain(v) for k, v in trainer.callback_metrics.items()}
        meter = next((cb for cb in trainer.callbacks if isinstance(cb, Throughput)), None)
        throughput = {**meter.latest, **meter.run_average()} if meter else {}
        tokens = getattr(pl_module, "tokens_seen", 0)
        summary.update({
            "config": self.config or summary.get("config", {}),
            "params": pl_module.num_params(non_embedding=False),
            "params_non_embedding": pl_module.num_params(non_embedding=True),
            "flops_per_token": pl_module.flops_per_token(),
            "tokens_seen": tokens,
            "flops": pl_module.flops_per_token() * tokens,
            "global_step": trainer.global_step,
            "world_size": trainer.world_size,
            "precision": str(trainer.precision),
        })
        summary.setdefault("metrics", {}).update(metrics)
        for key in ("val/loss", "val/ppl", "test/loss", "test/ppl"):
            if key in metrics:
                summary[key] = metrics[key]
        if stage == "fit":
            # the last window's figures, and the mean over the run (validation and start-up left out)
            summary["throughput"] = {k.split("/", 1)[-1]: v for k, v in throughput.items()}
            summary["train_seconds"] = round(time.time() - self.start, 2)  # the whole fit, validation included
            ckpt = trainer.checkpoint_callback
            if ckpt is not None:
                summary["checkpoints"] = {"last": ckpt.last_model_path, "best": ckpt.best_model_path}
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger) and logger._experiment is not None:
                summary["wandb"] = {"id": logger.experiment.id, "dir": logger.experiment.dir}
                # the facts `lit-llm scaling` needs, also in the W&B run summary (read back through W&B's API)
                logger.experiment.summary.update({k: summary[k] for k in (
                    "params", "params_non_embedding", "flops_per_token", "tokens_seen", "flops") if k in summary})
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(summary, indent=2))
        os.replace(tmp, path)

    def on_fit_end(self, trainer, pl_module) -> None:
        self._write(trainer, pl_module, "fit")

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "validate":
            self._write(trainer, pl_module, "validate")

    def on_test_end(self, trainer, pl_module) -> None:
        self._write(trainer, pl_module, "test")


class PredictionWriter(BasePredictionWriter):
    """Prints the completions of `lit-llm predict` and writes them to <log_dir>/predictions.jsonl."""

    def __init__(self) -> None:
        super().__init__(write_interval="epoch")

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        log_dir = trainer.log_dir  # a collective under DDP: every rank must ask
        if trainer.global_rank != 0:
            return
        out = Path(log_dir or trainer.default_root_dir) / "predictions.jsonl"
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w") as f:
            for item in predictions:
                f.write(json.dumps(item) + "\n")
                print(f"--- {item['prompt']!r}\n{item['completion']}")
        print(f"wrote {len(predictions)} completions to {out}")


class StepProgressBar(RichProgressBar):
    """Rich progress bar that labels training by steps: a fit is one endless epoch of random windows, so
    Lightning's "Epoch 0/-2" (max_epochs -1) says nothing."""

    def _get_train_description(self, current_epoch: int) -> str:
        limit = self.trainer.max_steps
        text = f"Training to step {limit}" if limit and limit > 0 else "Training"
        return f"{text:{len(self.validation_description)}}"
