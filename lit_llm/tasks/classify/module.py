"""TextClassifier: pooled token features -> a linear head, trained with cross-entropy.

arch "transformer": the GPT's final hidden states (GPT.hidden_states), from a lit_llm LM checkpoint
(`--model.checkpoint`, optionally frozen) or trained from scratch; arch "baseline": the source articles'
bag of embeddings (token embedding -> mean pooling -> linear), no Transformer. Pooling is the mean over a
text's tokens or the last token (its EOS; with causal attention the only position that has seen the
whole text). Padding sits at the end and pooling reads `lengths`, so with a causal backbone padding
changes nothing; a bidirectional (masked-LM) backbone does attend to it.

Metrics: accuracy (micro) and macro-F1 from torchmetrics over the whole split, plus the mean loss:
val/acc, val/f1, val/loss (and test/...), train/loss and train/acc per logged step.
"""

from __future__ import annotations

from functools import partial
from typing import Literal

import lightning as L
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from lit_llm.checkpoints import gpt_state_dict, read_lm_checkpoint
from lit_llm.errors import LitLLMError
from lit_llm.model.build import LanguageNetwork, build_model
from lit_llm.model.gpt import GPT, GPTConfig
from lit_llm.model.mup import lr_multiplier, scale_output
from lit_llm.training.lightning_internals import should_log, trainer_or_none
from lit_llm.training.optim import adamw_with_schedule


def pool(h: torch.Tensor, lengths: torch.Tensor, how: str) -> torch.Tensor:
    """h (B, L, C), lengths (B,) -> (B, C): the mean over each row's first `length` positions, or its last one."""
    if how == "last":
        return h[torch.arange(h.size(0), device=h.device), lengths - 1]
    keep = (torch.arange(h.size(1), device=h.device)[None, :] < lengths[:, None]).to(h.dtype)  # (B, L)
    return (h * keep[..., None]).sum(dim=1) / lengths[:, None].to(h.dtype)


def load_gpt(path: str) -> LanguageNetwork:
    """The GPT of a lit_llm LM checkpoint (plain tensors only). Built directly rather than through a
    LanguageModel: a LightningModule created inside LightningCLI's instantiation would take the outer
    module's hyper-parameters."""
    ckpt = read_lm_checkpoint(path)
    model = build_model(GPTConfig(**ckpt["lit_llm"]["model_config"]))
    model.load_state_dict(gpt_state_dict(ckpt))
    return model


class TextClassifier(L.LightningModule):
    def __init__(
        self,
        arch: Literal["transformer", "baseline"] = "transformer",
        checkpoint: str | None = None,
        pooling: Literal["mean", "last"] = "mean",
        freeze_backbone: bool = False,
        n_layer: int = 2,
        n_head: int = 4,
        n_embd: int = 64,
        dropout: float = 0.0,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        warmup_steps: int = 0,
        labels: list[str] | None = None,
        vocab_size: int = 0,
        block_size: int = 0,
    ) -> None:
        """
        Args:
            arch: transformer (GPT hidden states) or baseline (embedding -> mean pooling -> linear).
            checkpoint: a lit_llm LM checkpoint: the transformer's weights and (for either arch) the tokenizer.
            pooling: transformer: mean over the text's tokens, or the last token (EOS); the baseline always
                takes the mean.
            freeze_backbone: train the head only (the backbone stays in eval mode).
            n_layer: layers of a transformer trained from scratch (no checkpoint).
            n_head: heads of a transformer trained from scratch.
            n_embd: width of a transformer trained from scratch, and of the baseline's embedding.
            dropout: dropout before the head (and in a scratch transformer).
            lr: peak learning rate (AdamW; warmup, then cosine to lr/10 at trainer.max_steps).
            weight_decay: AdamW weight decay on weights of 2 or more dimensions.
            warmup_steps: linear warmup steps.
            labels: label names in id order; linked from the data (saved in checkpoints).
            vocab_size: linked from the data's tokenizer.
            block_size: longest text in tokens; linked from the data.
        """
        super().__init__()
        if not labels or len(labels) < 2:
            raise LitLLMError("model.labels is unset or has fewer than two labels: it comes from the data module")
        if vocab_size <= 0 or block_size <= 0:
            raise LitLLMError("model.vocab_size and model.block_size are unset: they come from the data module")
        if arch == "baseline" and freeze_backbone:
            raise LitLLMError("--model.freeze_backbone would leave the baseline only its head; use arch transformer")
        self.save_hyperparameters(logger=False)
        self.backbone: nn.Module
        if arch == "baseline":
            self.backbone = nn.Embedding(vocab_size, n_embd)
            width = n_embd
        elif checkpoint:
            self.backbone = load_gpt(checkpoint)
            if self.backbone.config.vocab_size != vocab_size:
                raise LitLLMError(f"{checkpoint} has a {self.backbone.config.vocab_size}-token vocabulary but the "
                                  f"data's tokenizer has {vocab_size}: the data must use the checkpoint's tokenizer")
            width = self.backbone.config.n_embd
        else:
            try:
                config = GPTConfig(vocab_size, block_size, n_layer, n_head, n_embd, dropout=dropout)
            except ValueError as err:
                raise LitLLMError(f"invalid model config: {err}") from None
            self.backbone, width = GPT(config), n_embd
        if freeze_backbone:
            self.backbone.requires_grad_(False)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(width, len(labels))
        n = len(labels)
        for split in ("val", "test"):
            setattr(self, f"{split}_acc", MulticlassAccuracy(n, average="micro"))
            setattr(self, f"{split}_f1", MulticlassF1Score(n, average="macro"))
            setattr(self, f"{split}_loss", MeanMetric())
        self.tokens_seen = 0
        self.tokenizer_json: str | None = None

    def train(self, mode: bool = True):
        super().train(mode)
        if self.hparams.freeze_backbone:
            self.backbone.eval()  # a frozen backbone keeps its dropout off
        return self

    def setup(self, stage: str) -> None:
        dm = getattr(trainer_or_none(self), "datamodule", None)
        if hasattr(dm, "label_list"):
            if dm.label_list() != list(self.hparams.labels):
                raise LitLLMError(f"the data's labels {dm.label_list()} differ from the model's {self.hparams.labels}")
            self.tokenizer_json = dm.tokenizer_json()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["lit_llm_classifier"] = {"tokenizer_json": self.tokenizer_json, "labels": list(self.hparams.labels)}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.tokenizer_json = checkpoint.get("lit_llm_classifier", {}).get("tokenizer_json") or self.tokenizer_json

    # --- forward, loss, metrics ----------------------------------------------------------------
    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """tokens (B, L), lengths (B,) -> logits (B, n_labels)."""
        if self.hparams.arch == "baseline":  # the articles' baseline: always the mean of the embeddings
            return self.head(self.dropout(pool(self.backbone(tokens), lengths, "mean")))
        h = self.backbone.hidden_states(tokens)  # (B, L, C)
        # a µP backbone's readout multiplier (1/m) applies to this head as it does to its LM head
        return self.head(self.dropout(scale_output(pool(h, lengths, self.hparams.pooling), self.backbone.config)))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self(batch["tokens"], batch["lengths"])
        loss = F.cross_entropy(logits.float(), batch["labels"])
        self.tokens_seen += batch["tokens"].numel()
        if should_log(self.trainer):
            self.log("train/loss", loss)  # shown by StepProgressBar (prog_bar would sync every step)
            self.log("train/acc", (logits.argmax(-1) == batch["labels"]).float().mean())
            self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"])
        return loss

    def _eval_step(self, batch: dict, split: str) -> None:
        logits = self(batch["tokens"], batch["lengths"])
        preds, labels = logits.argmax(-1), batch["labels"]
        getattr(self, f"{split}_acc").update(preds, labels)
        getattr(self, f"{split}_f1").update(preds, labels)
        getattr(self, f"{split}_loss").update(F.cross_entropy(logits.float(), labels), weight=labels.numel())

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def _log_split(self, split: str) -> None:
        for name in ("loss", "acc", "f1"):
            metric = getattr(self, f"{split}_{name}")
            self.log(f"{split}/{name}", metric.compute().float(), prog_bar=name == "acc")
            metric.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_split("val")

    def on_test_epoch_end(self) -> None:
        self._log_split("test")

    # --- optimization --------------------------------------------------------------------------
    def configure_optimizers(self):
        hp = self.hparams
        config = getattr(self.backbone, "config", None)  # a µP backbone's block matrices train at lr / m
        mup = partial(lr_multiplier, cfg=config) if config is not None and config.parametrization == "mup" else None
        return adamw_with_schedule(self, hp.lr, hp.weight_decay, hp.warmup_steps, lr_multiplier=mup)

    # --- accounting (the run summary) ----------------------------------------------------------
    def num_params(self, non_embedding: bool = True) -> int:
        if self.hparams.arch == "transformer":
            return self.backbone.num_params(non_embedding) + sum(p.numel() for p in self.head.parameters())
        n = sum(p.numel() for p in self.parameters())
        return n - self.backbone.weight.numel() if non_embedding else n

    def flops_per_token(self) -> int:
        head = 6 * self.head.weight.numel()
        if self.hparams.arch == "transformer":  # the LM head is not used
            lm_head = 6 * self.backbone.lm_head.weight.numel()
            return self.backbone.flops_per_token(self.hparams.block_size) - lm_head + head
        return head
