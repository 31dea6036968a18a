"""Every fit ends with a validation and a last checkpoint at its final step."""

from __future__ import annotations

from lightning.pytorch.callbacks import Callback

from lit_llm.training.checkpointing import RunCheckpoint
from lit_llm.training.optim import planned_steps


class FinalValidation(Callback):
    """Every fit ends with a validation and a last checkpoint at its final step: stopping at the last step
    (max_steps, or the last of the last epoch) through trainer.should_stop makes Lightning validate there
    even off the val_check_interval grid, and last.ckpt is written at the end if ModelCheckpoint's own
    cadence (e.g. every_n_train_steps) missed it."""

    def __init__(self) -> None:
        self.last_step = float("inf")

    def on_train_start(self, trainer, pl_module) -> None:
        self.last_step = planned_steps(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.last_step:
            trainer.should_stop = True

    def on_train_end(self, trainer, pl_module) -> None:
        ckpt = trainer.checkpoint_callback
        if isinstance(ckpt, RunCheckpoint) and ckpt.save_last and ckpt.last_saved_step() != trainer.global_step:
            ckpt.write_last_checkpoint(trainer)
