"""MemoryCheck: before the first step, the estimate of a training step's memory against what is free; a run
that cannot fit stops at once with the estimate and a batch size that fits. The estimate is kept for the
CLI's out-of-memory message (`oom_message`)."""

from __future__ import annotations

import math

from lightning.pytorch.callbacks import Callback

from lit_llm.errors import LitLLMError
from lit_llm.model.gpt import GPTConfig
from lit_llm.training.memory import MemoryEstimate, human, available_bytes, estimate, largest_batch

LAST_FIT: dict = {}  # this process's last fit: "estimate" (MemoryEstimate), "trainer", for oom_message()


def fitting_batch(batch: int, fits: int) -> int:
    """The largest divisor of batch up to fits: that micro-batch, accumulated, keeps the tokens per step."""
    small = [d for d in range(1, math.isqrt(batch) + 1) if batch % d == 0]
    return max(d for d in small + [batch // d for d in small] if d <= fits)


class MemoryCheck(Callback):
    def __init__(self, check: bool = True, headroom: float = 0.9) -> None:
        """
        Args:
            check: estimate a training step's memory (weights, gradients, AdamW state, activations, logits)
                before training and stop at once when it exceeds the free memory; false skips the check
                (when the estimate is wrong for your setup).
            headroom: share of the free memory the estimate may take.
        """
        if not 0 < headroom <= 1:
            raise LitLLMError(f"--memory.headroom must be in (0, 1], got {headroom}")
        self.check, self.headroom = check, headroom

    def setup(self, trainer, pl_module, stage: str) -> None:
        LAST_FIT.clear()
        config = getattr(pl_module, "config", None)
        batch = getattr(trainer.datamodule, "batch_size", None)
        if stage != "fit" or not isinstance(config, GPTConfig) or not batch:
            return
        system = getattr(pl_module, "system", None)
        kwargs = {"precision": str(trainer.precision), "world_size": trainer.world_size,
                  "strategy": type(trainer.strategy).__name__,
                  "activation_checkpointing": bool(getattr(system, "activation_checkpointing", False))}
        est = estimate(config, batch, **kwargs)
        LAST_FIT.update(estimate=est, trainer=trainer)
        device = trainer.strategy.root_device
        free = available_bytes(device) if self.check else None
        if free is None:
            return
        if device.type == "cpu":  # the ranks on this machine share its memory
            free //= max(1, trainer.num_devices)
        allowed = int(free * self.headroom)
        if est.total <= allowed:
            return
        fits = largest_batch(allowed, config, batch, **kwargs)
        acc = trainer.accumulate_grad_batches
        if fits:
            smaller = fitting_batch(batch, fits)
            advice = (f"the largest --data.batch_size that fits is {fits}; to keep the tokens per step use "
                      f"--data.batch_size {smaller} --trainer.accumulate_grad_batches {acc * batch // smaller}")
        else:
            advice = ("even --data.batch_size 1 does not fit: lower --data.block_size or the model size, or use "
                      "--model.system.activation_checkpointing true or --trainer.precision bf16-mixed")
        raise LitLLMError(f"a training step needs about {est.describe()} but the {device.type} has "
                          f"{human(free)} free ({self.headroom:.0%} usable): {advice} "
                          "(--memory.check false skips this check)")


def oom_message(err: BaseException) -> str:
    """The one line for an out-of-memory error during a fit: the estimate, and the checkpoint saved."""
    est: MemoryEstimate | None = LAST_FIT.get("estimate")
    trainer = LAST_FIT.get("trainer")
    ckpt = getattr(getattr(trainer, "checkpoint_callback", None), "last_model_path", "") or "none saved yet"
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    line = f"out of memory ({first[:160]})"
    if est is not None:
        half = max(1, math.ceil(est.batch_size / 2))
        line += (f"; the estimate for --data.batch_size {est.batch_size} was {est.describe()}: try "
                 f"--data.batch_size {half} with --trainer.accumulate_grad_batches doubled")
    return f"{line}. Last checkpoint: {ckpt}" + (" (resume with --ckpt_path last)" if ckpt != "none saved yet" else "")
