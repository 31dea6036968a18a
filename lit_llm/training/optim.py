"""The one optimization recipe, shared by the language model and the classifier: AdamW with weight decay on
weights of 2 or more dimensions only, linear warmup then cosine decay (nanoGPT's), and gradient-norm
clipping that also measures the norm and skips a step whose gradients are not finite."""

from __future__ import annotations

import math
import sys

import lightning as L
import torch

from lit_llm.errors import LitLLMError


def lr_at(step: int, lr: float, min_lr: float, warmup_steps: int, decay_steps: int) -> float:
    """Linear warmup to lr, then cosine decay to min_lr at decay_steps, flat after (as nanoGPT)."""
    if step < warmup_steps:
        return lr * (step + 1) / (warmup_steps + 1)
    if step >= decay_steps:
        return min_lr
    ratio = (step - warmup_steps) / max(1, decay_steps - warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


def schedule_length(trainer: L.Trainer, decay_steps: int | None = None) -> int:
    """The step where the cosine reaches its floor: given, else the run's last step."""
    steps = decay_steps or (trainer.max_steps if trainer.max_steps > 0 else trainer.estimated_stepping_batches)
    if not math.isfinite(steps):
        raise LitLLMError("the run has no step limit, so the cosine schedule has no end: set "
                          "--model.lr_decay_steps (or --trainer.max_steps)")
    return int(steps)


def adamw_with_schedule(module: L.LightningModule, lr: float, weight_decay: float, warmup_steps: int,
                        min_lr: float | None = None, decay_steps: int | None = None,
                        betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> dict:
    """Lightning's configure_optimizers answer: AdamW (fused on CUDA) stepping a warmup + cosine schedule."""
    params = [p for p in module.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    fused = bool(params) and all(p.device.type == "cuda" for p in params)
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, **({"fused": True} if fused else {}))
    floor = min_lr if min_lr is not None else lr / 10
    steps = schedule_length(module.trainer, decay_steps)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_at(step, lr, floor, warmup_steps, steps) / lr)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


class NonFiniteGuard:
    """Skips optimizer steps whose gradient norm is not finite (the gradients are dropped, so AdamW
    leaves every parameter and its moments as they were) and stops after `limit` of them."""

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise LitLLMError(f"--model.max_nonfinite_skips must be >= 0, got {limit}")
        self.limit, self.skips = limit, 0

    def check(self, module: L.LightningModule, norm: torch.Tensor) -> None:
        # host sync: one read of the norm per optimizer step (the same on every rank: gradients are reduced)
        if torch.isfinite(norm):
            return
        for p in module.parameters():
            p.grad = None
        self.skips += 1
        trainer = module.trainer
        step = trainer.global_step
        if self.skips > self.limit:
            ckpt = getattr(trainer.checkpoint_callback, "last_model_path", "") or "none saved yet"
            raise LitLLMError(f"non-finite loss or gradient at step {step} after {self.limit} skipped steps; stopped. "
                              f"Last good checkpoint: {ckpt}. Lower --model.lr, or check the data")
        if trainer.is_global_zero:
            print(f"lit-llm: warning: non-finite loss or gradient at step {step}: step skipped "
                  f"({self.skips} of at most {self.limit})", file=sys.stderr, flush=True)


def clip_and_measure(module: L.LightningModule, max_norm: float | None) -> torch.Tensor:
    """Clip the gradients to max_norm (None: no clip) in one pass that also returns the pre-clip norm."""
    return torch.nn.utils.clip_grad_norm_(module.parameters(), max_norm if max_norm else float("inf"))
