"""Every fit ends with a validation and a last checkpoint at its final step."""

from __future__ import annotations

from lightning.pytorch.callbacks import Callback

from lit_llm.training.checkpointing import RunCheckpoint


class FinalValidation(Callback):
    """Every fit ends with a validation and a last checkpoint at its final step: stopping at max_steps
    through trainer.should_stop makes Lightning validate there even off the val_check_interval grid, and
    last.ckpt is written at the end if ModelCheckpoint's own cadence (e.g. every_n_train_steps) missed it."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps:
            trainer.should_stop = True

    def on_train_end(self, trainer, pl_module) -> None:
        ckpt = trainer.checkpoint_callback
        if isinstance(ckpt, RunCheckpoint) and ckpt.save_last and ckpt.last_saved_step() != trainer.global_step:
            ckpt.write_last_checkpoint(trainer)
