"""What a fit shows while it runs: the model overview at the start and a progress bar counted in steps."""

from __future__ import annotations

import time

import lightning as L
from lightning.pytorch.callbacks import RichModelSummary
from lightning.pytorch.utilities.model_summary import get_human_readable_count
from rich import get_console
from rich.table import Table

from lit_llm.training.lightning_internals import ProgressBarHooks, pending_step_metrics, should_log


class StepProgressBar(ProgressBarHooks):
    """Rich progress bar that labels training by steps: a fit by steps is one endless epoch of random
    windows, so Lightning's "Epoch 0/-2" (max_epochs -1) says nothing; an epoch fit shows "Epoch e/N".

    The bar is drawn refresh_rate times a second (once by default), but Lightning updates its count and
    metrics after every training step, ~0.3 ms of a CPU step; here they are updated at most every
    `update_interval` seconds, and always after the last step and before a validation.

    The training loss is read on the steps that log it, not logged with prog_bar=True: Lightning converts
    every prog_bar metric to a Python number after every batch, the stale ones too, which on a GPU is a
    host-device sync per step."""

    update_interval = 0.25  # seconds
    shown = ("train/loss",)  # logged metrics the bar shows

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._updated_at = -float("inf")
        self._pending: int | None = None  # batch_idx of a step whose update was skipped
        self._values: dict[str, float] = {}

    def get_metrics(self, trainer, pl_module) -> dict:
        return {**super().get_metrics(trainer, pl_module), **{k: f"{v:.3f}" for k, v in self._values.items()}}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if should_log(trainer):  # reads this step's logged values (syncs on a GPU, as the loggers do here)
            logged = pending_step_metrics(trainer)
            self._values.update({k: logged[k] for k in self.shown if k in logged})
        now = time.monotonic()
        last = trainer.should_stop or 0 < trainer.max_steps <= trainer.global_step
        if now - self._updated_at < self.update_interval and not last:
            self._pending = batch_idx
            return
        self._updated_at, self._pending = now, None
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def _catch_up(self, trainer, pl_module) -> None:
        if self._pending is not None:
            self._updated_at = -float("inf")
            self.on_train_batch_end(trainer, pl_module, None, None, self._pending)

    def on_validation_start(self, trainer, pl_module) -> None:
        self._catch_up(trainer, pl_module)
        super().on_validation_start(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._catch_up(trainer, pl_module)
        super().on_train_epoch_end(trainer, pl_module)

    def train_description(self, current_epoch: int) -> str:
        limit, epochs = self.trainer.max_steps, self.trainer.max_epochs or 0
        if epochs > 0:
            text = f"Epoch {current_epoch + 1}/{epochs}"
        else:
            text = f"Training to step {limit}" if limit and limit > 0 else "Training"
        return f"{text:{len(self.validation_description)}}"


class ModelOverview(RichModelSummary):
    """Lightning's model summary without its FLOPs column (it counts nothing unless a forward pass runs on an
    example input), and with the figure that matters for a language model: training FLOPs per token."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.flops_per_token = pl_module.flops_per_token() if hasattr(pl_module, "flops_per_token") else None
        super().on_fit_start(trainer, pl_module)

    def summarize(self, summary_data, total_parameters, trainable_parameters, model_size, total_training_modes,
                  total_flops, **kwargs) -> None:
        table = Table(header_style="bold magenta")
        columns = [(name, values) for name, values in summary_data if name not in ("FLOPs", "Mode")]
        for name, _ in columns:
            table.add_column(name, justify="right" if name == "Params" else "left")
        for row in zip(*(values for _, values in columns)):
            table.add_row(*row)
        console = get_console()
        console.print(table)
        facts = [f"params {get_human_readable_count(total_parameters)} ({get_human_readable_count(trainable_parameters)} "
                 f"trainable, {model_size:.1f} MB)"]
        if self.flops_per_token:
            facts.append(f"training FLOPs per token {get_human_readable_count(self.flops_per_token)}")
        console.print(", ".join(facts))
