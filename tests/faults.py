"""Fault injection for the reliability tests, kept out of the package.

- NonFiniteGradients: a callback (`--trainer.callbacks+=faults.NonFiniteGradients
  --trainer.callbacks.steps=5`) that poisons one gradient with NaN at the given optimizer steps ("5",
  "5,9", or "5+" for every step from 5), so the non-finite guard sees them.
- OutOfMemoryAt: a callback (`--trainer.callbacks+=faults.OutOfMemoryAt --trainer.callbacks.step=3`) that
  raises torch.OutOfMemoryError, as CUDA's allocator does, at the start of the given step.
- Run as a script, `python tests/faults.py --save-delay SECONDS -- fit ...` runs `lit-llm fit ...` with
  every checkpoint write paused halfway (half the bytes on disk), so a test can kill a save midway.
"""

from __future__ import annotations

import sys
import time

from lightning.pytorch.callbacks import Callback


class NonFiniteGradients(Callback):
    def __init__(self, steps: str = "5") -> None:
        self.steps = range(int(steps[:-1]), 2**62) if steps.endswith("+") else {int(s) for s in steps.split(",")}

    def on_after_backward(self, trainer, pl_module) -> None:
        if trainer.global_step in self.steps:
            grad = next(p.grad for p in pl_module.parameters() if p.grad is not None)
            grad.fill_(float("nan"))


class OutOfMemoryAt(Callback):
    def __init__(self, step: int = 3) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            import torch

            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


def slow_checkpoint_writes(seconds: float) -> None:
    """Every checkpoint write pauses halfway for `seconds` (patched in this process only)."""
    import lit_llm.checkpoints as checkpoints

    def write_chunks(f, data) -> None:
        half = len(data) // 2
        f.write(data[:half])
        f.flush()
        time.sleep(seconds)
        f.write(data[half:])

    checkpoints.write_chunks = write_chunks


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--save-delay"]:
        slow_checkpoint_writes(float(args[1]))
        args = args[2:]
    if args[:1] == ["--"]:
        args = args[1:]
    from lit_llm.cli.main import main

    sys.exit(main(args))
