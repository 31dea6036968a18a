"""Throughput: tokens/s, TFLOP/s and MFU against the device's dense peak for the precision in use."""

from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from lit_llm.checkpoints import write_atomically
from lit_llm.data.corpus import default_cache_dir
from lit_llm.training.lightning_internals import is_accumulating, should_log

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


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def best_cpu_peak_tflops(cache_dir: Path | None = None) -> float:
    """This CPU's fp32 peak at the current thread count: the better of a measurement now and the best recorded
    earlier on this machine (cpu_peak.json in the lit_llm cache). A run that starts while the cores are busy
    measures a depressed peak; dividing by it would overstate the run's MFU."""
    measured = measure_cpu_peak_tflops()
    path = (cache_dir or default_cache_dir()) / "cpu_peak.json"
    key = f"{cpu_name()}, {torch.get_num_threads()} threads"
    try:
        table = json.loads(path.read_text())
        recorded = float(table.get(key, 0.0))
    except (OSError, ValueError, TypeError, AttributeError):
        table, recorded = {}, 0.0
    if measured > recorded:
        try:  # a new best: record it (atomically: parallel runs may write at once); a read-only cache is fine
            write_atomically(path, json.dumps({**table, key: measured}, indent=1).encode())
        except OSError:
            pass
    return max(measured, recorded)


def device_peak_tflops(device: torch.device, precision: str) -> float | None:
    if device.type == "cpu":
        return best_cpu_peak_tflops()
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device).lower()
        for (chip, kind), tflops in PEAK_TFLOPS.items():
            if chip in name and kind == precision_kind(precision):
                return tflops
    return None


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
            peak_tflops: the device's peak TFLOP/s for MFU; default: a spec table on GPUs; on CPU a matmul
                measurement, or the best one recorded on this machine when that is higher.
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


    def _now(self, trainer: L.Trainer) -> float:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_train_start(self, trainer, pl_module) -> None:
        if self.peak_tflops is None:  # here, not in setup: the module's setup may switch TF32 on first
            self.peak_tflops = device_peak_tflops(trainer.strategy.root_device, str(trainer.precision))
        self.mark, self.tokens, self.warm = self._now(trainer), 0, False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        tokens = batch["tokens"]
        self.tokens += tokens.size(0) * (tokens.size(1) - 1)
        if is_accumulating(trainer) or not should_log(trainer):
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
