"""LanguageModel: the network (GPT, LSTM or GRU), its loss, metrics, optimizer and learning-rate schedule.

Every architecture option is a flat init argument (so sweeps name `model.n_layer` directly) and every one
is a plain type, so the checkpoint's hyper_parameters load with torch.load(weights_only=True). What the
objective is lives in objectives.py, the optimizer recipe in optim.py, and everything a resume needs
besides weights, optimizer and data position in resume.py. The tokenizer and data facts travel in the
checkpoint under "lit_llm" (on_save_checkpoint).
"""

from __future__ import annotations

import inspect
import json
from dataclasses import asdict, dataclass
from functools import partial
from typing import Literal

import lightning as L
import torch
from tokenizers import Tokenizer
from torchmetrics import MeanMetric

from lit_llm.checkpoints import read_lm_checkpoint
from lit_llm.errors import LitLLMError
from lit_llm.model.build import LanguageNetwork, build_model, shapes_only, width
from lit_llm.model.gpt import ARCH_FIELDS, GPTConfig
from lit_llm.model.mup import lr_multiplier
from lit_llm.training.evaluation import TokenNLL, record_loss_by_position
from lit_llm.training.finetune import load_init_weights
from lit_llm.training.lightning_internals import is_accumulating, should_log, trainer_or_none
from lit_llm.training.objectives import CausalLM, MaskedLM, chunk_nll, token_nll
from lit_llm.training.optim import (NonFiniteGuard, adamw_with_schedule, check_optimizer_settings, clip_and_measure,
                                    warmup_length)


def mean_over_ranks(trainer: L.Trainer, nll_sum: torch.Tensor, n_tokens: torch.Tensor) -> torch.Tensor:
    """sum(NLL) / sum(tokens) over all ranks. Under DDP the reduce works in place on nll_sum (pass a copy);
    n_tokens is copied by its conversion to nll_sum's dtype."""
    reduce = trainer.strategy.reduce
    return reduce(nll_sum, reduce_op="sum") / reduce(n_tokens.to(nll_sum.dtype), reduce_op="sum")


def check_compatible(config: GPTConfig, extra: dict, tokenizer_json: str | None) -> None:
    """A checkpoint (its "lit_llm" entry) of another architecture or tokenizer gets one line that names what
    differs, instead of a wall of state_dict size mismatches."""
    saved = extra.get("model_config") or {}
    diffs = [f"{k}: checkpoint {saved[k]!r}, this run {getattr(config, k)!r}"
             for k in ARCH_FIELDS if k in saved and saved[k] != getattr(config, k)]
    if diffs:
        raise LitLLMError("the checkpoint is of another model: " + "; ".join(diffs))
    theirs = extra.get("tokenizer_json")
    if theirs and tokenizer_json and json.loads(theirs) != json.loads(tokenizer_json):
        raise LitLLMError("the checkpoint was trained with another tokenizer than this run's data uses; "
                          "prepare the data with the checkpoint's tokenizer (--data.tokenizer PATH/tokenizer.json)")


@dataclass
class SystemOptions:
    """How the network runs, not what it computes (kept apart from the architecture)."""

    compile: bool = False
    """torch.compile the model (in place: checkpoints keep their keys)."""
    activation_checkpointing: bool = False
    """Recompute each block's activations in backward (less memory, ~30% more compute); under FSDP use the
    strategy's activation_checkpointing_policy instead."""
    pad_vocab_to: int = 64
    """Round the embedding and head rows up to a multiple of this (1 = none); invisible outside the model."""
    tf32: bool = True
    """On CUDA, run fp32 matmuls on TF32 tensor cores (torch.set_float32_matmul_precision("high"))."""


class LanguageModel(L.LightningModule):
    def __init__(
        self,
        vocab_size: int = 0,
        block_size: int = 0,
        arch: Literal["transformer", "lstm", "gru"] = "transformer",
        n_layer: int = 4,
        n_head: int = 4,
        n_embd: int = 128,
        aspect_ratio: int = 0,
        n_ff: int = 0,
        norm: Literal["layernorm", "rmsnorm"] = "layernorm",
        pos: Literal["learned", "rope"] = "learned",
        mlp: Literal["gelu", "gelu_exact", "swiglu"] = "gelu",
        bias: bool = True,
        tie_embeddings: bool = True,
        dropout: float = 0.0,
        rope_theta: float = 10000.0,
        parametrization: Literal["standard", "mup"] = "standard",
        mup_base_width: int = 0,
        lr: float = 1e-3,
        min_lr: float | None = None,
        warmup_steps: int = 100,
        warmup_steps_per_layer: int = 0,
        lr_decay_steps: int | None = None,
        weight_decay: float = 0.1,
        beta1: float = 0.9,
        beta2: float = 0.99,
        eps: float = 1e-8,
        max_nonfinite_skips: int = 3,
        init_from: str | None = None,
        objective: Literal["causal", "masked"] = "causal",
        mask_prob: float = 0.15,
        mask_seed: int = 1337,
        loss_by_position: bool = False,
        system: SystemOptions | dict | None = None,
    ) -> None:
        """
        Args:
            vocab_size: vocabulary size; linked from the data's tokenizer.
            block_size: context length; linked from --data.block_size.
            arch: transformer (GPT), or an lstm / gru language model (n_head, pos, mlp, n_ff, rope_theta unused).
            n_layer: Transformer blocks (recurrent: LSTM/GRU layers of width n_embd).
            n_head: attention heads.
            n_embd: model width.
            aspect_ratio: > 0: width aspect_ratio x n_layer, not n_embd (depth sets the size; docs/scaling-cpu.md).
            n_ff: feed-forward width (0: 4*n_embd for the GELUs, ~8/3*n_embd for swiglu).
            norm: layernorm (GPT-2) or rmsnorm.
            pos: learned absolute positions (GPT-2) or rope.
            mlp: gelu (GPT-2, tanh approximation), gelu_exact (erf, as nanoGPT; faster on CPU) or swiglu.
            bias: biases in Linear and LayerNorm layers.
            tie_embeddings: share the token embedding with the output head.
            dropout: dropout probability.
            rope_theta: RoPE base.
            parametrization: standard (GPT-2's) or mup (µP: lr tuned at mup_base_width transfers across widths).
            mup_base_width: µP: the n_embd the hyper-parameters were tuned at.
            lr: peak learning rate.
            min_lr: final learning rate of the cosine decay (default lr / 10).
            warmup_steps: linear warmup steps.
            warmup_steps_per_layer: > 0: warm up for n_layer x this many steps instead (deeper models longer).
            lr_decay_steps: step where the cosine reaches min_lr (default: the fit's last step, max_steps or epochs').
            weight_decay: AdamW weight decay, applied to weights of 2 or more dimensions only.
            beta1: AdamW beta1.
            beta2: AdamW beta2.
            eps: AdamW epsilon.
            max_nonfinite_skips: steps with a non-finite loss or gradient skipped (no update, a warning each)
                before training stops with an error; the last good checkpoint stays as it is.
            init_from: fine-tune from a lit_llm checkpoint, HF GPT-2/Llama directory or export-safetensors file.
            objective: causal (next token) or masked (BERT's masked LM; needs <mask>, as char and bpe have).
            mask_prob: masked objective: share of positions selected for the loss (80% MASK, 10% random, 10% kept).
            mask_seed: masked objective: seed of the masks (each micro-batch's mask is fixed by it and the step).
            loss_by_position: also record the val/test loss at each position of the context (loss_by_position.csv, W&B).
            system: compile and activation checkpointing (--model.system.*).
        """
        super().__init__()
        if vocab_size <= 0 or block_size <= 0:
            raise LitLLMError("model.vocab_size and model.block_size are unset: they come from the data module")
        check_optimizer_settings(lr, warmup_steps, weight_decay, beta1, beta2, eps)  # the sizes: GPTConfig
        self.warmup_steps = warmup_length(warmup_steps, warmup_steps_per_layer, n_layer)  # in optimizer steps
        n_embd = width(n_layer, n_embd, aspect_ratio)  # hparams keep the arguments: a reload gets the same width
        self.system = SystemOptions(**system) if isinstance(system, dict) else system or SystemOptions()
        self.save_hyperparameters(ignore=["system"], logger=False)  # the CLI logs the full config, flat
        self.hparams["system"] = asdict(self.system)  # plain types: checkpoints load with weights_only
        try:
            self.config = GPTConfig(vocab_size, block_size, n_layer, n_head, n_embd, n_ff, norm, pos, mlp,
                                    bias, tie_embeddings, dropout, rope_theta, causal=objective == "causal",
                                    pad_vocab_to=self.system.pad_vocab_to, parametrization=parametrization,
                                    mup_base_width=mup_base_width, arch=arch)
        except ValueError as err:
            raise LitLLMError(f"invalid model config: {err}") from None
        self.objective = MaskedLM(mask_prob, mask_seed, vocab_size) if objective == "masked" else CausalLM()
        self.model: LanguageNetwork | None = None  # built in configure_model(), on the meta device under FSDP
        self.val_nll, self.test_nll = TokenNLL(block_size * loss_by_position), TokenNLL(block_size * loss_by_position)
        if objective == "masked":  # accuracy of the argmax prediction at the masked positions
            self.val_mlm_acc, self.test_mlm_acc = MeanMetric(), MeanMetric()
        self.guard = NonFiniteGuard(max_nonfinite_skips)
        self.tokens_seen = 0
        self.step_nll, self.step_tokens = 0.0, 0  # sums over the micro-batches of the current step
        self.tokenizer_json, self.data_meta = None, {}  # from the data module or the checkpoint
        self.loss_chunk = chunk_nll

    def configure_model(self) -> None:
        """Built here, not in __init__, so Lightning creates it on the device (or on the meta device for FSDP,
        which materialises each layer with its reset_parameters: our init); parallelism stays in the strategy."""
        if self.model is not None:
            return
        self.model = build_model(self.config)
        if self.hparams.init_from and trainer_or_none(self) is not None:
            load_init_weights(self)
        self.model.checkpoint_blocks = self.system.activation_checkpointing
        if self.system.compile:
            self.model.compile()
            self.loss_chunk = torch.compile(chunk_nll)  # the training loss fused too (see token_nll)

    def setup(self, stage: str) -> None:
        trainer = trainer_or_none(self)
        if self.system.tf32 and trainer is not None and trainer.strategy.root_device.type == "cuda":
            torch.set_float32_matmul_precision("high")  # TF32 tensor cores for fp32 matmuls
        dm = getattr(trainer, "datamodule", None)
        if hasattr(dm, "prepare_once"):
            prepared = dm.prepare_once()
            if prepared.vocab_size != self.config.vocab_size:
                raise LitLLMError(f"the tokenizer has {prepared.vocab_size} tokens but the model was built for "
                                  f"{self.config.vocab_size}; use the same tokenizer or retrain")
            self.tokenizer_json = (prepared.path / "tokenizer.json").read_text()
            self.data_meta = prepared.meta
        if self.tokenizer_json:
            self.objective.bind(self.tokenizer())  # fails before training when the tokenizer lacks <mask>

    # --- what a checkpoint carries besides the weights ---------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["lit_llm"] = {"tokenizer_json": self.tokenizer_json, "data_meta_json": json.dumps(self.data_meta),
                                 "model_config": asdict(self.config), "tokens_seen": self.tokens_seen}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        extra = checkpoint.get("lit_llm", {})
        check_compatible(self.config, extra, self.tokenizer_json)  # the CLI checked it before touching any log
        self.tokens_seen = int(extra.get("tokens_seen", 0))
        self.tokenizer_json = extra.get("tokenizer_json") or self.tokenizer_json
        self.data_meta = json.loads(extra.get("data_meta_json") or "{}") or self.data_meta

    @classmethod
    def from_checkpoint(cls, path: str) -> LanguageModel:
        """The module rebuilt from a lit_llm checkpoint alone (weights, tokenizer), in eval mode."""
        ckpt = read_lm_checkpoint(path)
        known = inspect.signature(cls).parameters
        module = cls(**{k: v for k, v in ckpt["hyper_parameters"].items() if k in known})
        module.configure_model()
        module.load_state_dict(ckpt["state_dict"])
        module.on_load_checkpoint(ckpt)
        return module.eval()

    def tokenizer(self) -> Tokenizer:
        if self.tokenizer_json is None:
            raise LitLLMError("this model has no tokenizer attached (a checkpoint from lit_llm carries one)")
        return Tokenizer.from_str(self.tokenizer_json)

    # --- loss and metrics --------------------------------------------------------------------------------
    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.model(idx)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        trainer = self.trainer
        accum, world = trainer.accumulate_grad_batches, trainer.world_size
        # the global micro-batch index (steps, accumulation, ranks) seeds a masked objective: resumable
        micro_batch = (trainer.global_step * accum + batch_idx % accum) * world + trainer.global_rank
        inputs, targets = self.objective.training_pair(batch, micro_batch)
        nll_sum, n_tokens = token_nll(self.model(inputs), targets, chunk_fn=self.loss_chunk)
        # Lightning divides each micro-batch's loss by accumulate_grad_batches and DDP averages gradients
        # over ranks; multiplying by both and dividing by the optimizer step's token count (all micro-
        # batches, all ranks) makes the gradient that of sum(NLL) / sum(tokens) over the step, however the
        # step is split. Without "step_tokens" every micro-batch is assumed to hold as many targets.
        scale = accum * world
        loss = nll_sum * scale / batch.get("step_tokens", n_tokens.clamp(min=1) * scale)
        self.tokens_seen += inputs.numel() * world  # from the shape: no device sync
        if accum > 1:  # the step's loss sums its micro-batches (without accumulation: this one's sums)
            self.step_nll, self.step_tokens = self.step_nll + nll_sum.detach(), self.step_tokens + n_tokens
        if not is_accumulating(trainer) and should_log(trainer):  # self.log: ~0.5-1 ms a call in Lightning
            nll, count = (self.step_nll, self.step_tokens) if accum > 1 else (nll_sum.detach().clone(), n_tokens)
            step_loss = mean_over_ranks(trainer, nll, count)
            self.log("train/loss", step_loss)  # shown by StepProgressBar, not prog_bar: no sync per step
            self.log_dict({"train/ppl": torch.exp(step_loss), "lr": trainer.optimizers[0].param_groups[0]["lr"],
                           "tokens_seen": torch.tensor(self.tokens_seen, dtype=torch.float64)})
        if accum > 1 and not is_accumulating(trainer):
            self.step_nll, self.step_tokens = 0.0, 0
        return loss

    def _evaluate(self, batch: dict, batch_idx: int, split: str) -> None:
        trainer = trainer_or_none(self)
        logits, targets = self.objective.eval_pair(self.model, batch, batch_idx, trainer.global_rank if trainer else 0)
        nll_sum, n_scored, correct = self.objective.score(logits, targets)
        getattr(self, f"{split}_nll").update(nll_sum, n_scored, logits, targets)  # and by position, if on
        if correct is not None:
            getattr(self, f"{split}_mlm_acc").update(correct.float() / n_scored.clamp(min=1), weight=n_scored)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test")

    def _log_split(self, split: str) -> None:
        metric = getattr(self, f"{split}_nll")
        loss = metric.compute()  # already reduced across ranks
        record_loss_by_position(trainer_or_none(self), metric, split)  # --model.loss_by_position: CSV, W&B
        metric.reset()
        self.log(f"{split}/loss", loss.float(), prog_bar=True)
        self.log(f"{split}/ppl", torch.exp(loss).float())
        # the x-axis of these rows in W&B (and in `lit-llm report`): tokens trained on so far
        self.log("tokens_seen", torch.tensor(self.tokens_seen, dtype=torch.float64))
        if not self.objective.causal:
            acc = getattr(self, f"{split}_mlm_acc")
            self.log(f"{split}/mlm_acc", acc.compute().float())
            acc.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_split("val")

    def on_test_epoch_end(self) -> None:
        self._log_split("test")

    def predict_step(self, batch: str, batch_idx: int) -> str:
        return batch  # the prompt: the Predictions callback generates with --samples.* settings

    # --- optimization ------------------------------------------------------------------------------------
    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        if gradient_clip_algorithm == "value":
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
            return
        norm = clip_and_measure(self, gradient_clip_val)  # one pass clips and measures the global norm
        self.guard.check(self.trainer, norm)
        if should_log(self.trainer):
            self.log("grad_norm", norm)
            self.guard.report(self.trainer)

    def configure_optimizers(self):
        hp = self.hparams
        return adamw_with_schedule(self, hp.lr, hp.weight_decay, self.warmup_steps, hp.min_lr, hp.lr_decay_steps,
                                   (hp.beta1, hp.beta2), hp.eps, partial(lr_multiplier, cfg=self.config))

    # --- accounting --------------------------------------------------------------------------------------
    def network(self) -> LanguageNetwork:  # before configure_model: a shape-only copy, for counting
        return self.model if self.model is not None else shapes_only(self.config)

    def num_params(self, non_embedding: bool = True) -> int:
        return self.network().num_params(non_embedding)

    def flops_per_token(self) -> int:
        return self.network().flops_per_token(self.config.block_size)
