"""`lit-llm fit|validate|test|predict`: LightningCLI over LanguageModel and TextDataModule."""

from __future__ import annotations

import math

from lit_llm.cli.base import TRAINER_DEFAULTS, BaseCLI, add_checkpoint_arguments
from lit_llm.data.datamodule import TextDataModule
from lit_llm.errors import LitLLMError
from lit_llm.training.callbacks.memory import MemoryCheck
from lit_llm.training.callbacks.samples import GeneratedSamples
from lit_llm.training.callbacks.throughput import Throughput
from lit_llm.training.finetune import apply_init_from
from lit_llm.training.loggers import finish_wandb
from lit_llm.training.module import LanguageModel, check_compatible


def tokenizer_size(data: TextDataModule) -> int:
    """The prepared data's vocabulary size (prepares the data on first use), linked to --model.vocab_size."""
    return data.prepare_once().vocab_size


class LitLLMCLI(BaseCLI):
    def add_arguments_to_parser(self, parser) -> None:
        super().add_arguments_to_parser(parser)
        add_checkpoint_arguments(parser, monitor="val/loss", mode="min")
        parser.add_lightning_class_args(Throughput, "throughput")
        parser.add_lightning_class_args(MemoryCheck, "memory")
        parser.add_lightning_class_args(GeneratedSamples, "samples")
        parser.add_argument("--max_tokens", type=float | None, default=None,
                            help="training budget in tokens; sets trainer.max_steps from the global batch")
        parser.add_argument("--max_flops", type=float | None, default=None,
                            help="training budget in FLOPs (the model's flops_per_token x tokens, attention and head "
                                 "included); sets trainer.max_steps like --max_tokens: an isoFLOP sweep names it")
        parser.add_argument("--tokens_per_step", type=int | None, default=None,
                            help="global batch in tokens; sets trainer.accumulate_grad_batches from the micro-batch "
                                 "(data.batch_size x data.block_size) and the number of devices")
        parser.link_arguments("data.block_size", "model.block_size")
        parser.link_arguments("data", "model.vocab_size", compute_fn=tokenizer_size, apply_on="instantiate")

    def checkpoint_hparams_to_config(self, path: str, hparams: dict) -> None:
        """--model.loss_by_position is an evaluation setting, not the model's: turned on on the command line
        it holds (`lit-llm validate --ckpt_path CKPT --model.loss_by_position true`); else the checkpoint's."""
        if self.config[self.config["subcommand"]].model.get("loss_by_position"):
            hparams = {k: v for k, v in hparams.items() if k != "loss_by_position"}
        super().checkpoint_hparams_to_config(path, hparams)

    def before_instantiate_classes(self) -> None:
        apply_init_from(self.config[self.subcommand] if self.subcommand else self.config, LanguageModel, TextDataModule)

    def before_trainer(self, trainer_config: dict) -> None:
        if self.subcommand != "fit":
            return
        for name in ("val_check_interval", "accumulate_grad_batches", "log_every_n_steps"):
            value = trainer_config.get(name)
            if isinstance(value, (int, float)) and value <= 0:
                raise LitLLMError(f"--trainer.{name} must be positive, got {value}")
        tokens_per_step = self.value(self.config, "tokens_per_step")
        if tokens_per_step is not None and tokens_per_step <= 0:
            raise LitLLMError(f"--tokens_per_step must be positive, got {tokens_per_step}")
        max_steps, epochs = trainer_config.get("max_steps", -1), trainer_config.get("max_epochs")
        if epochs not in (None, -1):
            self.epoch_fit_options(trainer_config, epochs, max_steps)
            return
        endless = max_steps == -1 and not trainer_config.get("max_time") and not (
            self.value(self.config, "max_tokens") or self.value(self.config, "max_flops"))
        if max_steps == 0 or max_steps < -1 or endless:
            raise LitLLMError(f"--trainer.max_steps must be positive, got {max_steps} (the training data is "
                              "an endless stream: -1 only with --trainer.max_time and --model.lr_decay_steps; "
                              "or give --trainer.max_epochs N for N passes over the data)")
        trainer_config["max_epochs"] = -1  # one endless epoch (Lightning would pick 1000 with max_steps -1)

    def epoch_fit_options(self, trainer_config: dict, epochs: int, max_steps: int) -> None:
        """--trainer.max_epochs N: N passes over the data (docs/training.md#epochs). lit_llm's defaults for
        fits by steps, max_steps 300 and val_check_interval 100, do not apply: the epochs end the fit (another
        max_steps caps it, the earlier limit wins, as in Lightning), and it validates after every epoch (an
        int val_check_interval: every that many batches; a float: at that fraction of each epoch)."""
        if epochs <= 0:
            raise LitLLMError(f"--trainer.max_epochs must be positive, got {epochs} (-1: train by steps)")
        if max_steps == 0 or max_steps < -1:
            raise LitLLMError(f"--trainer.max_steps must be positive or -1, got {max_steps}")
        if trainer_config.get("limit_train_batches") not in (None, 1.0):
            raise LitLLMError("--trainer.limit_train_batches cuts every epoch short, which an epoch fit's data "
                              "position does not follow; shorten the fit with --trainer.max_steps instead")
        defaults, changes = self.defaults(self.subcommand).trainer, {}
        if max_steps == defaults.get("max_steps"):
            changes["max_steps"] = -1
        interval = trainer_config.get("val_check_interval")
        if type(interval) is int and interval == defaults.get("val_check_interval"):
            interval = changes["val_check_interval"] = 1.0
        if isinstance(interval, float) and trainer_config.get("check_val_every_n_epoch") is None:
            changes["check_val_every_n_epoch"] = 1
        saved = self.config[self.subcommand].trainer  # config.yaml shows the options the fit ran with
        for key, value in changes.items():
            trainer_config[key] = saved[key] = value

    def check_resume(self, resume: dict) -> None:
        model, data = self.value(self.config_init, "model"), self.value(self.config_init, "data")
        tokenizer_json = (data.prepare_once().path / "tokenizer.json").read_text()
        check_compatible(model.config, resume["lit_llm"], tokenizer_json)
        saved = resume["lit_llm"].get("model_config", {}).get("pad_vocab_to", 1)  # unpadded before it existed
        if saved != model.config.pad_vocab_to:  # the optimizer's moments have the saved row count
            raise LitLLMError(f"the checkpoint pads the vocabulary to a multiple of {saved}: resume with "
                              f"--model.system.pad_vocab_to {saved}")
        position = resume.get("data_position") or {}
        by_epochs = (self.value(self.config_init, "trainer").get("max_epochs") or -1) > 0
        if by_epochs and position.get("train_batches_consumed", 0) > 0:
            raise LitLLMError("the checkpoint is of a fit by steps: resume it without --trainer.max_epochs (or "
                              "start an epoch fit from its weights with --model.init_from)")
        if not by_epochs and (position.get("epoch", 0) > 0 or position.get("epoch_batches_consumed", 0) > 0):
            raise LitLLMError("the checkpoint is of an epoch fit: resume it with --trainer.max_epochs (or start a "
                              "fit by steps from its weights with --model.init_from)")

    def after_trainer(self, trainer) -> None:
        """--tokens_per_step sets the accumulation, --max_tokens the step count (both need the world size)."""
        data = self.value(self.config_init, "data")
        tokens_per_step = self.value(self.config, "tokens_per_step")
        if tokens_per_step:
            micro = data.batch_size * data.block_size * trainer.world_size
            if tokens_per_step % micro:
                raise LitLLMError(f"--tokens_per_step {tokens_per_step} is not a multiple of batch_size x "
                                  f"block_size x devices = {micro}")
            trainer.accumulate_grad_batches = tokens_per_step // micro
        max_tokens, max_flops = self.value(self.config, "max_tokens"), self.value(self.config, "max_flops")
        if max_flops is not None:
            if max_tokens is not None or max_flops <= 0:
                raise LitLLMError(f"--max_flops must be positive and not given with --max_tokens, got {max_flops}")
            max_tokens = max_flops / self.value(self.config_init, "model").flops_per_token()
        if max_tokens is not None:
            if max_tokens <= 0:
                raise LitLLMError(f"--max_tokens must be positive, got {max_tokens}")
            per_step = data.batch_size * data.block_size * trainer.world_size * trainer.accumulate_grad_batches
            trainer.fit_loop.epoch_loop.max_steps = max(1, math.ceil(max_tokens / per_step))


def main(args: list[str] | None) -> None:
    """LightningCLI; args None reads sys.argv (LightningCLI warns when given both)."""
    cli = LitLLMCLI(
        LanguageModel,
        TextDataModule,
        trainer_defaults=TRAINER_DEFAULTS,
        seed_everything_default=1337,
        parser_kwargs={"prog": "lit-llm"},
        args=args,
    )
    if cli.subcommand == "fit" and cli.trainer.is_global_zero:
        finish_wandb()  # its own closing lines come first, ours last
        if block := cli.run_summary.closing_block():
            print(block, flush=True)
