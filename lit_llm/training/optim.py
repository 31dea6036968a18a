"""The one optimization recipe, shared by the language model and the classifier: AdamW with weight decay on
weights of 2 or more dimensions only, linear warmup then cosine decay (nanoGPT's), and gradient-norm
clipping that measures the global norm under every strategy and skips, on the device, a step whose
gradients are not finite.

Host syncs: none per step. The clip and the skip decide on the device; the norm and the skip count are
read on logging steps only (`NonFiniteGuard.report`)."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable

import lightning as L
import torch
from lightning.pytorch.strategies import FSDPStrategy
from torch.distributed.tensor import DTensor

from lit_llm.errors import LitLLMError


def lr_at(step: int, lr: float, min_lr: float, warmup_steps: int, decay_steps: int) -> float:
    """Linear warmup to lr, then cosine decay to min_lr at decay_steps, flat after (as nanoGPT)."""
    if step < warmup_steps:
        return lr * (step + 1) / (warmup_steps + 1)
    if step >= decay_steps:
        return min_lr
    ratio = (step - warmup_steps) / max(1, decay_steps - warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


def planned_steps(trainer: L.Trainer) -> float:
    """The optimizer steps the fit will take (inf when only time limits it): max_steps in a fit by steps;
    in an epoch fit (positive max_epochs) Lightning's estimate, epochs x ceil(this rank's micro-batches per
    epoch / accumulate_grad_batches), capped by max_steps; exact here, as an epoch holds a whole number of
    optimizer steps (EpochWindows)."""
    if (getattr(trainer, "max_epochs", None) or 0) > 0:
        return trainer.estimated_stepping_batches
    return trainer.max_steps if trainer.max_steps > 0 else trainer.estimated_stepping_batches


def schedule_length(trainer: L.Trainer, decay_steps: int | None = None) -> int:
    """The step where the cosine reaches its floor: given, else the run's last step."""
    steps = decay_steps or planned_steps(trainer)
    if not math.isfinite(steps):
        raise LitLLMError("the run has no step limit, so the cosine schedule has no end: set "
                          "--model.lr_decay_steps (or --trainer.max_steps or --trainer.max_epochs)")
    return int(steps)


def param_groups(module: torch.nn.Module, lr: float, weight_decay: float,
                 lr_multiplier: Callable[[str, torch.Tensor], float] | None = None) -> list[dict]:
    """AdamW's groups: weight decay on weights of 2 or more dimensions only. With lr_multiplier(name, param)
    (µP) the parameters of each multiplier form groups at lr * multiplier and weight_decay / multiplier, so
    the decoupled decay step lr * weight_decay is the base one (the mup package's AdamW). The first group
    is the decayed one at the base lr (what the "lr" metric shows)."""
    groups: dict[tuple[bool, bool, float], dict] = {}
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        mult = lr_multiplier(name, p) if lr_multiplier is not None else 1.0
        key = (p.dim() < 2, mult != 1.0, mult)
        decay = weight_decay / mult if p.dim() >= 2 else 0.0
        groups.setdefault(key, {"params": [], "weight_decay": decay, "lr": lr * mult})["params"].append(p)
    return [groups[key] for key in sorted(groups)]


def check_optimizer_settings(lr: float, warmup_steps: int, weight_decay: float, beta1: float, beta2: float,
                             eps: float) -> None:
    """AdamW's and the schedule's settings, checked before anything runs (torch's own errors are tracebacks)."""
    if lr <= 0:
        raise LitLLMError(f"--model.lr must be positive, got {lr}")
    if warmup_steps < 0 or weight_decay < 0:
        raise LitLLMError(f"--model.warmup_steps and --model.weight_decay must be >= 0, got {warmup_steps} and "
                          f"{weight_decay}")
    if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
        raise LitLLMError(f"--model.beta1 and --model.beta2 must be in [0, 1), got {beta1} and {beta2}")
    if eps <= 0:
        raise LitLLMError(f"--model.eps must be positive, got {eps}")


def warmup_length(warmup_steps: int, per_layer: int, n_layer: int) -> int:
    """The warm-up in optimizer steps: per_layer x n_layer when per_layer > 0 (a deeper model warms up longer:
    docs/scaling-cpu.md#the-sixth-run-a-warm-up-that-grows-with-depth), else warmup_steps."""
    if per_layer < 0:
        raise LitLLMError(f"--model.warmup_steps_per_layer must be >= 0 (0: use warmup_steps), got {per_layer}")
    return per_layer * n_layer or warmup_steps


def adamw_with_schedule(module: L.LightningModule, lr: float, weight_decay: float, warmup_steps: int,
                        min_lr: float | None = None, decay_steps: int | None = None,
                        betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                        lr_multiplier: Callable[[str, torch.Tensor], float] | None = None) -> dict:
    """Lightning's configure_optimizers answer: AdamW (fused on CUDA) stepping a warmup + cosine schedule,
    which multiplies each group's own lr (see `param_groups`)."""
    groups = param_groups(module, lr, weight_decay, lr_multiplier)
    params = [p for g in groups for p in g["params"]]
    # fused: one kernel for all parameters, and it honours `found_inf` (a step skipped on the device); not
    # under a GradScaler (16-mixed), where Lightning must unscale the gradients before they are clipped
    fused = (bool(params) and all(p.device.type in ("cuda", "cpu") for p in params)
             and not grad_scaler_active(module.trainer))
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, **({"fused": True} if fused else {}))
    floor = min_lr if min_lr is not None else lr / 10
    steps = schedule_length(module.trainer, decay_steps)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_at(step, lr, floor, warmup_steps, steps) / lr)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def grad_scaler_active(trainer: L.Trainer) -> bool:
    """16-mixed: a GradScaler scales the loss, skips the steps whose gradients overflow and adjusts the scale."""
    return getattr(getattr(trainer, "precision_plugin", None), "scaler", None) is not None


def clip_and_measure(module: L.LightningModule, max_norm: float | None) -> torch.Tensor:
    """Clip the gradients to the global norm max_norm (None: no clip) and return the global pre-clip norm,
    by each strategy's own mechanism (see `clip_global_norm`)."""
    strategy = module.trainer.strategy
    fsdp_root = strategy.model if isinstance(strategy, FSDPStrategy) else None
    return clip_global_norm(list(module.parameters()), max_norm, fsdp_root)


def clip_global_norm(parameters: list[torch.nn.Parameter], max_norm: float | None,
                     fsdp_root: torch.nn.Module | None = None) -> torch.Tensor:
    """FSDP (1): the root module reduces the norm of every rank's shards. DTensor parameters (FSDP2's
    fully_shard, ModelParallelStrategy): torch's clip computes the norm of the whole tensors, returned as a
    DTensor and made whole here. Single device and DDP: full, already all-reduced gradients. A per-shard
    norm would be wrong: each rank would clip by the norm of its own part."""
    limit = max_norm if max_norm else float("inf")
    if fsdp_root is not None:
        return fsdp_root.clip_grad_norm_(limit)
    norm = torch.nn.utils.clip_grad_norm_([p for p in parameters if p.grad is not None], limit)
    return norm.full_tensor() if isinstance(norm, DTensor) else norm


class NonFiniteGuard:
    """Skips optimizer steps whose gradient norm is not finite and stops after `limit` of them.

    The skip is decided on the device: the fused AdamW receives `found_inf` (as from a GradScaler) and
    leaves every parameter, moment and step count as they were. Under a GradScaler (16-mixed) the scaler
    skips overflowing steps itself: those are its normal scale search, not failures, and are not counted.
    The count is read, reported and checked against the limit on logging steps only."""

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise LitLLMError(f"--model.max_nonfinite_skips must be >= 0, got {limit}")
        self.limit, self.skips, self.reported = limit, None, 0

    def check(self, trainer: L.Trainer, norm: torch.Tensor) -> None:
        if grad_scaler_active(trainer):
            return
        found_inf = (~torch.isfinite(norm)).to(torch.float32)  # on the device: no sync
        for optimizer in trainer.optimizers:
            optimizer.found_inf = found_inf  # the fused AdamW skips the step when it is 1
        self.skips = found_inf if self.skips is None else self.skips + found_inf

    def report(self, trainer: L.Trainer) -> None:
        """On a logging step: warn about steps skipped since the last report, stop past the limit."""
        if self.skips is None:
            return
        total = int(self.skips.item())  # host sync: logging steps only
        step = trainer.global_step
        if total > self.limit:
            ckpt = getattr(trainer.checkpoint_callback, "last_model_path", "") or "none saved yet"
            raise LitLLMError(f"non-finite loss or gradient at step {step} after {self.limit} skipped steps; stopped. "
                              f"Last good checkpoint: {ckpt}. Lower --model.lr, or check the data")
        if total > self.reported and trainer.is_global_zero:
            print(f"lit-llm: warning: non-finite loss or gradient: {total - self.reported} step(s) skipped up to "
                  f"step {step} ({total} of at most {self.limit})", file=sys.stderr, flush=True)
        self.reported = total
