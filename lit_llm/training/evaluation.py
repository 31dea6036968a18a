"""Evaluation metrics of the language model: the split's exact token-weighted loss (TokenNLL) and, with
`--model.loss_by_position true`, the loss at each position of the context (the same metric), written to
`loss_by_position.csv` in the run's log directory and to W&B as a table.

Both sum NLL and target counts over every batch and every rank before dividing, so the loss by position
averages back to the split's loss: sum_t loss_t * tokens_t / sum_t tokens_t = val/loss.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import Metric

from lit_llm.checkpoints import write_atomically
from lit_llm.data.samplers import IGNORE_INDEX
from lit_llm.training.lightning_internals import log_step
from lit_llm.training.loggers import wandb_loggers
from lit_llm.training.objectives import LOSS_CHUNK_ROWS

POSITION_FILES = {"val": "loss_by_position.csv", "test": "loss_by_position_test.csv"}
POSITION_COLUMNS = ["position", "loss", "tokens"]


def position_nll(logits: torch.Tensor, targets: torch.Tensor,
                 chunk_rows: int = LOSS_CHUNK_ROWS) -> tuple[torch.Tensor, torch.Tensor]:
    """logits (B, T, V), targets (B, T) -> summed NLL (T,) and scored targets (T,) at each position,
    over the batch; positions whose target is IGNORE_INDEX count nothing. fp32 softmax, in row chunks."""
    B, T = targets.shape
    flat, flat_targets = logits.detach().flatten(0, 1), targets.flatten()
    nll = torch.cat([F.cross_entropy(x.float(), t, ignore_index=IGNORE_INDEX, reduction="none")
                     for x, t in zip(flat.split(chunk_rows), flat_targets.split(chunk_rows))])
    return nll.view(B, T).to(torch.float64).sum(dim=0), (targets != IGNORE_INDEX).sum(dim=0)


class TokenNLL(Metric):
    """Token-weighted mean negative log-likelihood: sum of NLL / number of target tokens, summed over
    every batch and every rank before dividing, so exp() of it is the split's exact perplexity. With
    positions=block_size it also sums the NLL and the targets at each position of the context; compute()
    then keeps those sums, from the same reduction over the ranks, in `by_position` (else None)."""

    full_state_update = False

    def __init__(self, positions: int = 0) -> None:
        super().__init__()
        self.positions, self.by_position = positions, None
        self.add_state("nll", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("tokens", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        if positions:
            self.add_state("nll_at", default=torch.zeros(positions, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state("tokens_at", default=torch.zeros(positions, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, nll_sum: torch.Tensor, n_tokens: torch.Tensor, logits: torch.Tensor | None = None,
               targets: torch.Tensor | None = None) -> None:
        """The batch's sums; with positions, also its logits (B, T, V) and targets (B, T), T <= positions."""
        self.nll += nll_sum.detach().to(torch.float64)
        self.tokens += n_tokens.detach().to(torch.int64)
        if self.positions and logits is not None:
            nll, tokens = position_nll(logits, targets)
            self.nll_at[: nll.size(0)] += nll
            self.tokens_at[: tokens.size(0)] += tokens

    def compute(self) -> torch.Tensor:
        if self.positions:
            self.by_position = (self.nll_at.clone(), self.tokens_at.clone())
        return self.nll / self.tokens.clamp(min=1)


def position_rows(nll: torch.Tensor, tokens: torch.Tensor) -> list[list]:
    """[position, mean loss, tokens] for every position that had a target."""
    return [[t, nll[t].item() / tokens[t].item(), int(tokens[t])] for t in range(len(tokens)) if tokens[t] > 0]


def record_loss_by_position(trainer: L.Trainer | None, metric: TokenNLL, split: str) -> list[list] | None:
    """After metric.compute() (every rank calls this: the log directory is a collective under DDP): on rank
    0 write POSITION_FILES[split] into the log directory (replacing the previous validation's) and log the
    rows to W&B as a table. Nothing without positions, in a sanity check or without a trainer."""
    if metric.by_position is None:
        return None
    (nll, tokens), metric.by_position = metric.by_position, None
    if trainer is None or trainer.sanity_checking:
        return None
    log_dir = trainer.log_dir  # a collective under DDP: every rank must ask
    if not trainer.is_global_zero:
        return None
    rows = position_rows(nll.cpu(), tokens.cpu())
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(POSITION_COLUMNS)
    writer.writerows([t, repr(loss), n] for t, loss, n in rows)
    write_atomically(Path(log_dir or trainer.default_root_dir) / POSITION_FILES[split], text.getvalue().encode())
    loggers = wandb_loggers(trainer)
    if loggers:
        import wandb  # only with a W&B logger (as samples.py)

        table = wandb.Table(columns=POSITION_COLUMNS, data=rows)
        for logger in loggers:
            logger.log_metrics({f"{split}/loss_by_position": table}, step=log_step(trainer))
    return rows
