"""LanguageModel: the GPT, its next-token loss, metrics, optimizer and LR schedule.

Every model option is a flat init argument (so sweeps name `model.n_layer` directly) and every one is
a plain type, so the checkpoint's hyper_parameters load with torch.load(weights_only=True).
The tokenizer and data facts travel in the checkpoint under "lit_llm" (see on_save_checkpoint).
"""

from __future__ import annotations

import json
import os
import sys
import math
from dataclasses import asdict
from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric, Metric

from lit_llm.callbacks import should_log
from lit_llm.errors import LitLLMError
from lit_llm.model import GPT, GPTConfig

IGNORE_INDEX = -1


class TokenNLL(Metric):
    """Token-weighted mean negative log-likelihood: sum of NLL / number of target tokens, summed over
    every batch and every rank before dividing, so exp() of it is the split's exact perplexity."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("nll", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("tokens", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, nll_sum: torch.Tensor, n_tokens: torch.Tensor) -> None:
        self.nll += nll_sum.detach().to(torch.float64)
        self.tokens += n_tokens.detach().to(torch.int64)

    def compute(self) -> torch.Tensor:
        return self.nll / self.tokens.clamp(min=1)


ARCHITECTURE_FIELDS = ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "n_ff", "norm", "pos", "mlp",
                       "bias", "tie_embeddings", "rope_theta")  # what a state_dict depends on (not dropout)
NAN_STEPS_ENV = "LIT_LLM_TEST_NAN_STEPS"


def nan_injection_steps() -> set[int] | range:
    """Test hook: LIT_LLM_TEST_NAN_STEPS="5" or "5,9" makes those steps' loss NaN; "5+" every step from 5."""
    spec = os.environ.get(NAN_STEPS_ENV, "").strip()
    if not spec:
        return set()
    if spec.endswith("+"):
        return range(int(spec[:-1]), 2**62)
    return {int(x) for x in spec.split(",")}


def lr_at(step: int, lr: float, min_lr: float, warmup_steps: int, decay_steps: int) -> float:
    """Linear warmup to lr, then cosine decay to min_lr at decay_steps, flat after (as nanoGPT)."""
    if step < warmup_steps:
        return lr * (step + 1) / (warmup_steps + 1)
    if step >= decay_steps:
        return min_lr
    ratio = (step - warmup_steps) / max(1, decay_steps - warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


class LanguageModel(L.LightningModule):
    def __init__(
        self,
        vocab_size: int = 0,
        block_size: int = 0,
        n_layer: int = 4,
        n_head: int = 4,
        n_embd: int = 128,
        n_ff: int = 0,
        norm: Literal["layernorm", "rmsnorm"] = "layernorm",
        pos: Literal["learned", "rope"] = "learned",
        mlp: Literal["gelu", "swiglu"] = "gelu",
        bias: bool = True,
        tie_embeddings: bool = True,
        dropout: float = 0.0,
        rope_theta: float = 10000.0,
        lr: float = 1e-3,
        min_lr: float | None = None,
        warmup_steps: int = 100,
        lr_decay_steps: int | None = None,
        weight_decay: float = 0.1,
        beta1: float = 0.9,
        beta2: float = 0.99,
        eps: float = 1e-8,
        sample_max_new_tokens: int = 200,
        sample_temperature: float = 0.8,
        sample_top_k: int | None = 200,
        compile: bool = False,
        activation_checkpointing: bool = False,
        max_nonfinite_skips: int = 3,
        init_from: str | None = None,
        objective: Literal["causal", "masked"] = "causal",
        mask_prob: float = 0.15,
        mask_seed: int = 1337,
    ) -> None:
        """
        Args:
            vocab_size: vocabulary size; linked from the data's tokenizer.
            block_size: context length; linked from --data.block_size.
            n_layer: Transformer blocks.
            n_head: attention heads.
            n_embd: model width.
            n_ff: feed-forward width (0: 4*n_embd for gelu, ~8/3*n_embd for swiglu).
            norm: layernorm (GPT-2) or rmsnorm.
            pos: learned absolute positions (GPT-2) or rope.
            mlp: gelu (GPT-2, tanh approximation) or swiglu.
            bias: biases in Linear and LayerNorm layers.
            tie_embeddings: share the token embedding with the output head.
            dropout: dropout probability.
            rope_theta: RoPE base.
            lr: peak learning rate.
            min_lr: final learning rate of the cosine decay (default lr / 10).
            warmup_steps: linear warmup steps.
            lr_decay_steps: step where the cosine reaches min_lr (default: trainer.max_steps).
            weight_decay: AdamW weight decay, applied to weights of 2 or more dimensions only.
            beta1: AdamW beta1.
            beta2: AdamW beta2.
            eps: AdamW epsilon.
            sample_max_new_tokens: tokens generated per prompt by `predict`.
            sample_temperature: sampling temperature for `predict` (0 = greedy).
            sample_top_k: top-k for `predict` (None = no cut).
            compile: torch.compile the model (in place: checkpoints keep their keys).
            activation_checkpointing: recompute each block's activations in backward (less memory, ~30%
                more compute); under FSDP use the strategy's activation_checkpointing_policy instead.
            max_nonfinite_skips: optimizer steps with a non-finite loss or gradient that are skipped (no
                weight update, a warning each) before training stops with an error; the last good
                checkpoint stays as it is.
            init_from: fine-tune: start from the weights of a lit_llm checkpoint, a Hugging Face GPT-2/Llama
                directory or an export-safetensors file; its architecture, block size and tokenizer are used.
            objective: causal (next token) or masked (BERT's masked LM, bidirectional attention; needs a
                tokenizer with <mask>, as char and bpe have; no generation).
            mask_prob: masked objective: share of positions selected for the loss (80% MASK, 10% random, 10% kept).
            mask_seed: masked objective: seed of the masks (each micro-batch's mask is fixed by it and the step).
        """
        super().__init__()
        if vocab_size <= 0 or block_size <= 0:
            raise LitLLMError("model.vocab_size and model.block_size are unset: they come from the data module")
        for name in ("lr", "n_layer", "n_head", "n_embd"):
            if locals()[name] <= 0:
                raise LitLLMError(f"--model.{name} must be positive, got {locals()[name]}")
        self.save_hyperparameters(logger=False)  # the CLI logs the full config, flat
        try:
            self.config = GPTConfig(vocab_size, block_size, n_layer, n_head, n_embd, n_ff, norm, pos, mlp,
                                    bias, tie_embeddings, dropout, rope_theta, causal=objective == "causal")
        except ValueError as err:
            raise LitLLMError(f"invalid model config: {err}") from None
        self.model: GPT | None = None  # built in configure_model(), on the meta device under FSDP
        self.val_nll = TokenNLL()
        self.test_nll = TokenNLL()
        if objective == "masked":  # accuracy of the argmax prediction at the masked positions
            if not 0 < mask_prob <= 1:
                raise LitLLMError(f"--model.mask_prob must be in (0, 1], got {mask_prob}")
            self.val_mlm_acc, self.test_mlm_acc = MeanMetric(), MeanMetric()
        self.tokens_seen = 0
        self._step_nll, self._step_tokens = 0.0, 0  # sums over the micro-batches of the current step
        self._pending_rng: dict | None = None  # RNG state to restore before the first resumed step
        self._realign_log_step = False
        self._nonfinite_skips = 0
        self._nan_steps = nan_injection_steps()  # test hook, empty unless LIT_LLM_TEST_NAN_STEPS is set
        self.tokenizer_json: str | None = None  # set from the data module or the checkpoint
        self.data_meta: dict = {}

    def configure_model(self) -> None:
        """Build the network here, not in __init__, so Lightning can create it directly on the device, or
        on the meta device for FSDP, which then materialises each layer with its reset_parameters (our
        GPT-2 init). Parallelism itself stays in the trainer's strategy."""
        if self.model is not None:
            return
        self.model = GPT(self.config)
        if self.hparams.init_from and self._trainer is not None:  # not when a checkpoint is rebuilt for generate
            from lit_llm.finetune import load_init_weights

            load_init_weights(self)
        self.model.checkpoint_blocks = self.hparams.activation_checkpointing
        if self.hparams.compile:
            self.model.compile()

    # --- data facts carried by the module -------------------------------------------------------
    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        prepared = getattr(dm, "prepared", None) if dm is not None else None
        if prepared is not None:
            if prepared.vocab_size != self.config.vocab_size:
                raise LitLLMError(
                    f"the tokenizer has {prepared.vocab_size} tokens but the model was built for "
                    f"{self.config.vocab_size}; use the same tokenizer or retrain"
                )
            self.tokenizer_json = (prepared.path / "tokenizer.json").read_text()
            self.data_meta = prepared.meta
        if self.hparams.objective == "masked":
            self.mask_id()  # fail before training when the tokenizer has no <mask>

    def on_train_start(self) -> None:
        self._realign_log_step = True

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        from lit_llm.resume import rng_state

        rng = [rng_state()]
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rng = [None] * torch.distributed.get_world_size()  # every rank's, so each resumes its own
            torch.distributed.all_gather_object(rng, rng_state())
        checkpoint["lit_llm"] = {
            "tokenizer_json": self.tokenizer_json,
            "data_meta_json": json.dumps(self.data_meta),
            "model_config": asdict(self.config),
            "tokens_seen": self.tokens_seen,
            "rng": rng,
            "run": self._run_ids(),
            "pending_row": self._pending_row(),
        }

    def _pending_row(self) -> dict | None:
        """A checkpoint taken at the end of a training step precedes the writing of that step's metrics
        row; keep the row so a resume after a kill can write it (no step goes missing from the log)."""
        trainer = self._trainer
        if trainer is None or not trainer.training or not should_log(trainer):
            return None
        logged = trainer._results.metrics(on_step=True)["log"] if trainer._results is not None else {}
        metrics = {k: float(v) for k, v in logged.items()}
        return {"step": trainer.fit_loop.epoch_loop._batches_that_stepped, "epoch": trainer.current_epoch,
                "metrics": metrics} if metrics else None

    def _run_ids(self) -> dict:
        """The CSV log version and W&B run id, so a resumed fit continues the same logs."""
        ids = {}
        from lightning.pytorch.loggers import CSVLogger, WandbLogger

        for logger in self.trainer.loggers if self._trainer is not None else []:
            if isinstance(logger, CSVLogger):
                ids["csv_version"] = logger.version
            elif isinstance(logger, WandbLogger) and logger._experiment is not None:
                ids["wandb_id"] = logger.experiment.id
        return ids

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        extra = checkpoint.get("lit_llm", {})
        self.check_compatible(extra)
        self.tokens_seen = int(extra.get("tokens_seen", 0))
        self.tokenizer_json = extra.get("tokenizer_json") or self.tokenizer_json
        self.data_meta = json.loads(extra.get("data_meta_json") or "{}") or self.data_meta
        rng = extra.get("rng")
        if rng and self._trainer is not None and self.trainer.state.fn == "fit":
            rank = self.trainer.global_rank
            # applied just before the next training step: creating the data iterator draws from the RNG
            self._pending_rng = rng[rank] if rank < len(rng) else rng[0]

    def check_compatible(self, extra: dict, tokenizer_json: str | None = None) -> None:
        """A checkpoint of another architecture or tokenizer gets one line that names what differs (instead
        of a wall of state_dict size mismatches). The CLI calls it before it touches any log; Lightning
        again before it loads the weights."""
        saved = extra.get("model_config") or {}
        diffs = [f"{k}: checkpoint {saved[k]!r}, this run {getattr(self.config, k)!r}"
                 for k in ARCHITECTURE_FIELDS if k in saved and saved[k] != getattr(self.config, k)]
        if diffs:
            raise LitLLMError("the checkpoint is of another model: " + "; ".join(diffs))
        theirs, ours = extra.get("tokenizer_json"), tokenizer_json or self.tokenizer_json
        if theirs and ours and json.loads(theirs) != json.loads(ours):
            raise LitLLMError("the checkpoint was trained with another tokenizer than this run's data uses; "
                              "prepare the data with the checkpoint's tokenizer (--data.tokenizer PATH/tokenizer.json)")

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        if self._realign_log_step:
            # Lightning saves checkpoints before it counts the step they follow, so a resumed run would log
            # a step twice (or skip one); before the first step of a (re)start, log steps = global_step.
            self.trainer.fit_loop.epoch_loop._batches_that_stepped = self.trainer.global_step
            self._realign_log_step = False
        if self._pending_rng is not None:
            from lit_llm.resume import set_rng_state

            set_rng_state(self._pending_rng)
            self._pending_rng = None

    # --- loss and metrics ------------------------------------------------------------------------
    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.model(idx)

    def nll(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed next-token NLL over target positions != -1, and the number of such positions."""
        logits = self.model(inputs)
        nll_sum = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(),
                                  ignore_index=IGNORE_INDEX, reduction="sum")
        return nll_sum, (targets != IGNORE_INDEX).sum()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        tokens = batch["tokens"]
        inputs, targets = tokens[:, :-1], batch.get("targets", tokens[:, 1:])  # -1 marks positions without a target
        if self.hparams.objective == "masked":
            inputs, targets = self.masked(inputs, self._micro_batch_index(batch_idx))
        nll_sum, n_tokens = self.nll(inputs, targets)
        # Lightning divides each micro-batch's loss by accumulate_grad_batches and DDP averages gradients
        # over ranks; multiplying by both and dividing by the optimizer step's token count (all micro-
        # batches, all ranks) makes the gradient that of sum(NLL) / sum(tokens) over the step, however the
        # step is split. Without "step_tokens" every micro-batch is assumed to hold as many targets.
        accum, world = self.trainer.accumulate_grad_batches, self.trainer.world_size
        step_tokens = batch["step_tokens"] if "step_tokens" in batch else n_tokens.clamp(min=1) * accum * world
        loss = nll_sum * (accum * world) / step_tokens
        if self.trainer.global_step in self._nan_steps:
            loss = loss * float("nan")
        self.tokens_seen += tokens[:, 1:].numel() * world  # from the shape: no device sync
        self._step_nll = self._step_nll + nll_sum.detach()
        self._step_tokens = self._step_tokens + n_tokens
        if not self.trainer.fit_loop._should_accumulate():
            if should_log(self.trainer):  # logging costs ~0.1 ms a call: only on the steps that are written
                strategy = self.trainer.strategy
                step_loss = strategy.reduce(self._step_nll, reduce_op="sum") / strategy.reduce(
                    self._step_tokens.to(self._step_nll.dtype), reduce_op="sum")
                self.log("train/loss", step_loss, prog_bar=True)
                self.log("train/ppl", torch.exp(step_loss))
                self.log("tokens_seen", torch.tensor(self.tokens_seen, dtype=torch.float64))
                self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"])
            self._step_nll, self._step_tokens = 0.0, 0
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        if self.hparams.objective == "masked":
            return self._masked_eval(batch, batch_idx, self.val_nll, self.val_mlm_acc)
        self.val_nll.update(*self.nll(batch["input"], batch["target"]))

    def test_step(self, batch: dict, batch_idx: int) -> None:
        if self.hparams.objective == "masked":
            return self._masked_eval(batch, batch_idx, self.test_nll, self.test_mlm_acc)
        self.test_nll.update(*self.nll(batch["input"], batch["target"]))

    def _log_split(self, split: str, metric: TokenNLL) -> None:
        loss = metric.compute()  # already reduced across ranks
        metric.reset()
        self.log(f"{split}/loss", loss.float(), prog_bar=True)
        self.log(f"{split}/ppl", torch.exp(loss).float())
        # the x-axis of these rows in W&B (and in `lit-llm report`): tokens trained on so far
        self.log("tokens_seen", torch.tensor(self.tokens_seen, dtype=torch.float64))
        if self.hparams.objective == "masked":
            acc = getattr(self, f"{split}_mlm_acc")
            self.log(f"{split}/mlm_acc", acc.compute().float())
            acc.reset()

    # --- masked LM (lit_llm/masking.py) ----------------------------------------------------------
    def mask_id(self) -> int:
        from lit_llm.data.tokenizer import MASK

        mask_id = self.tokenizer().token_to_id(MASK)
        if mask_id is None:
            raise LitLLMError(f"--model.objective masked needs a tokenizer with a {MASK} token: use "
                              "--data.tokenizer char or bpe (gpt2 has none)")
        return mask_id

    def _micro_batch_index(self, batch_idx: int) -> int:
        """The global micro-batch index (steps, accumulation, ranks), which seeds its mask: resumable."""
        accum, world = self.trainer.accumulate_grad_batches, self.trainer.world_size
        return (self.trainer.global_step * accum + batch_idx % accum) * world + self.trainer.global_rank

    def masked(self, tokens: torch.Tensor, index: int, valid: torch.Tensor | None = None):
        from lit_llm.masking import mask_tokens, seeded_generator

        if not hasattr(self, "_mask_id"):
            self._mask_id = self.mask_id()
        generator = seeded_generator(self.hparams.mask_seed * 1_000_003 + index, tokens.device)
        return mask_tokens(tokens, self._mask_id, self.config.vocab_size, generator, self.hparams.mask_prob, valid)

    def _masked_eval(self, batch: dict, batch_idx: int, nll: TokenNLL, acc: MeanMetric) -> None:
        """The same masks at every evaluation (seeded by the batch), scored at the selected positions."""
        from lit_llm.masking import masked_lm_scores

        rank = self.trainer.global_rank if self._trainer is not None else 0
        valid = batch["target"] != IGNORE_INDEX  # the padded tail of a short last window is not scored
        inputs, targets = self.masked(batch["input"], -(1 + batch_idx * 1024 + rank), valid)
        nll_sum, n_scored, correct = masked_lm_scores(self.model(inputs), targets)
        nll.update(nll_sum, n_scored)
        acc.update(correct.float() / n_scored.clamp(min=1), weight=n_scored)

    def on_validation_epoch_end(self) -> None:
        self._log_split("val", self.val_nll)

    def on_test_epoch_end(self) -> None:
        self._log_split("test", self.test_nll)

    def predict_step(self, batch: str, batch_idx: int) -> dict:
        from lit_llm.generate import generate_text

        hp = self.hparams
        texts = generate_text(self.model, self.tokenizer(), batch, hp.sample_max_new_tokens,
                              hp.sample_temperature, hp.sample_top_k, seed=batch_idx)
        return {"prompt": batch, "completion": texts[0]}

    def tokenizer(self):
        from tokenizers import Tokenizer

        if self.tokenizer_json is None:
            raise LitLLMError("this model has no tokenizer attached (a checkpoint from lit_llm carries one)")
        return Tokenizer.from_str(self.tokenizer_json)

    # --- optimization ----------------------------------------------------------------------------
    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        if gradient_clip_algorithm == "value":
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
            return
        # one pass both clips (when asked) and measures the pre-clip norm we log
        max_norm = gradient_clip_val if gradient_clip_val else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(self.parameters(), max_norm)
        if should_log(self.trainer):
            self.log("grad_norm", norm)
        if not torch.isfinite(norm):  # the same on every rank: gradients are already all-reduced
            self.skip_nonfinite_step()

    def skip_nonfinite_step(self) -> None:
        """Drop this step's gradients: AdamW leaves parameters without a gradient (and their moments)
        untouched, so the step is a no-op. After max_nonfinite_skips such steps, stop."""
        for p in self.parameters():
            p.grad = None
        self._nonfinite_skips += 1
        step, limit = self.trainer.global_step, self.hparams.max_nonfinite_skips
        if self._nonfinite_skips > limit:
            ckpt = getattr(self.trainer.checkpoint_callback, "last_model_path", "") or "none saved yet"
            raise LitLLMError(f"non-finite loss or gradient at step {step} after {limit} skipped steps; stopped. "
                              f"Last good checkpoint: {ckpt}. Lower --model.lr, or check the data")
        if self.trainer.is_global_zero:
            print(f"lit-llm: warning: non-finite loss or gradient at step {step}: step skipped "
                  f"({self._nonfinite_skips} of at most {limit})", file=sys.stderr, flush=True)

    def configure_optimizers(self):
        hp = self.hparams
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": hp.weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
        fused = all(p.device.type == "cuda" for p in params)
        optimizer = torch.optim.AdamW(groups, lr=hp.lr, betas=(hp.beta1, hp.beta2), eps=hp.eps,
                                      **({"fused": True} if fused else {}))
        min_lr = hp.min_lr if hp.min_lr is not None else hp.lr / 10
        decay_steps = hp.lr_decay_steps or (self.trainer.max_steps if self.trainer.max_steps > 0
                                            else self.trainer.estimated_stepping_batches)
        if not math.isfinite(decay_steps):
            raise LitLLMError("the run has no step limit, so the cosine schedule has no end: set "
                              "--model.lr_decay_steps (or --trainer.max_steps)")
        decay_steps = int(decay_steps)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_at(step, hp.lr, min_lr, hp.warmup_steps, decay_steps) / hp.lr
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # --- accounting ------------------------------------------------------------------------------
    def num_params(self, non_embedding: bool = True) -> int:
        return self.model.num_params(non_embedding)

    def flops_per_token(self) -> int:
        return self.model.flops_per_token(self.config.block_size)
