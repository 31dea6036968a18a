"""Magnitude pruning during training, scheduled by step.

GPTPruning is Lightning's ModelPruning driven by training steps instead of epochs (our runs are one long
epoch): it L1-prunes the weights of the Linear layers inside the Transformer blocks (attention and MLP
projections; embeddings, norms and the output head are left dense) to a target sparsity, either at once
or gradually along Zhu & Gupta's cubic schedule s(t) = s_f (1 - (1 - (t - t0) / (t1 - t0))^3). Pruned
weights stay zero while training continues (a mask), and every checkpoint holds plain weights with the
zeros in place (ModelPruning's make_pruning_permanent), so it loads into a plain GPT. Zeros are counted
only on the steps that prune (counting reads device values).
"""

from __future__ import annotations

import math
from typing import Literal

import lightning as L
import torch.nn as nn
import torch.nn.utils.prune as prune
from lightning.pytorch.callbacks import ModelPruning

from lit_llm.errors import LitLLMError
from lit_llm.model.gpt import Block
from lit_llm.training.lightning_internals import set_pruning_targets, should_log
from lit_llm.training.optim import planned_steps


def block_linears(module: nn.Module) -> list[nn.Linear]:
    """The Linear layers of the GPT's Transformer blocks (module may be the GPT or a module holding one)."""
    blocks = [m for m in module.modules() if isinstance(m, Block)]
    return [m for block in blocks for m in block.modules() if isinstance(m, nn.Linear)]


def sparsity(layers: list[nn.Module]) -> float:
    """Share of zeros in the layers' (effective) weights."""
    zeros = sum(int((layer.weight == 0).sum()) for layer in layers)  # host sync: call only when due
    return zeros / max(1, sum(layer.weight.numel() for layer in layers))


def target_sparsity(step: int, amount: float, schedule: str, start: int, end: int) -> float:
    if step < start:
        return 0.0
    if schedule == "once" or step >= end:
        return amount
    return amount * (1 - (1 - (step - start) / max(1, end - start)) ** 3)


class GPTPruning(ModelPruning):
    def __init__(
        self,
        amount: float = 0.5,
        schedule: Literal["once", "gradual"] = "gradual",
        start_step: int = 0,
        end_step: int | None = None,
        every_n_steps: int = 10,
        use_global_unstructured: bool = False,
        verbose: int = 0,
    ) -> None:
        """
        Args:
            amount: final sparsity of the pruned weights (0.3 = 30% zeros).
            schedule: once (all of it at start_step) or gradual (cubic from start_step to end_step).
            start_step: first step that prunes.
            end_step: step where the gradual schedule reaches amount (default: the fit's last step).
            every_n_steps: how often the gradual schedule prunes.
            use_global_unstructured: rank all weights together (layers end with different sparsities)
                instead of each layer on its own (every layer reaches amount).
            verbose: 1 logs the overall sparsity, 2 each layer's (Lightning's ModelPruning).
        """
        if not 0 <= amount < 1:
            raise LitLLMError(f"pruning amount must be in [0, 1), got {amount}")
        if every_n_steps <= 0 or start_step < 0:
            raise LitLLMError("pruning every_n_steps must be positive and start_step non-negative")
        super().__init__("l1_unstructured", parameter_names=["weight"], amount=amount,
                         use_global_unstructured=use_global_unstructured, make_pruning_permanent=True,
                         use_lottery_ticket_hypothesis=False, verbose=verbose, prune_on_train_epoch_end=False)
        self.schedule, self.start_step, self.end_step, self.every_n_steps = schedule, start_step, end_step, every_n_steps
        self.target = amount
        self.layers: list[nn.Linear] = []
        self.current = 0.0  # sparsity after the latest pruning (measured only when pruning is due)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        pass  # the model is built later, in configure_model(): see on_fit_start

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        layers = block_linears(pl_module)
        if not layers:
            raise LitLLMError("GPTPruning found no Transformer blocks to prune")
        set_pruning_targets(self, [(layer, "weight") for layer in layers])
        self.layers = layers
        for layer in layers:  # resumed from a pruned checkpoint: keep its zeros at zero
            if (layer.weight == 0).any():
                prune.custom_from_mask(layer, "weight", mask=layer.weight != 0)
        if self.end_step is None:
            planned = planned_steps(trainer)
            self.end_step = max(self.start_step, int(planned) if math.isfinite(planned) else -1)
        self.current = sparsity(layers)

    # ModelPruning prunes per epoch; here, by training step only
    def on_train_epoch_end(self, trainer, pl_module) -> None:
        pass

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        pass

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step  # optimizer steps done
        due = step >= self.start_step and (self.schedule == "once" or step >= self.end_step
                                           or (step - self.start_step) % self.every_n_steps == 0)
        target = target_sparsity(step, self.target, self.schedule, self.start_step, self.end_step)
        if due and target > self.current + 1e-6:
            # PyTorch prunes a share of the weights still unpruned: the step from current to target
            self.apply_pruning((target - self.current) / (1 - self.current))
            self.current = sparsity(self.layers)
        if should_log(trainer):
            pl_module.log("pruning/sparsity", self.current)
