"""`lit-llm`: LightningCLI (fit, validate, test, predict) plus `prepare` and `generate`.

Run outputs under --trainer.default_root_dir (default `runs`):
  checkpoints/            last.ckpt and the best by val/loss (ModelCheckpoint, options --checkpoint.*)
  lightning_logs/version_N/  metrics.csv, config.yaml, hparams.yaml, summary.json, samples.jsonl
  wandb/                  W&B run directories (offline unless logged in or WANDB_MODE=online)
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException

from lit_llm.callbacks import FinalValidation, PredictionWriter, RunSummary, StepProgressBar, Throughput
from lit_llm.checkpointing import AtomicCheckpointIO, RunCheckpoint
from lit_llm.data.datamodule import TextDataModule
from lit_llm.errors import LitLLMError
from lit_llm.module import LanguageModel
from lit_llm.resume import ResumableCSVLogger, ResumableWandbLogger
from lit_llm.samples import GeneratedSamples
from lit_llm.wandb_run import WandbRun, run_facts

# noise from Lightning internals that a user cannot act on
warnings.filterwarnings("ignore", message=".*treespec.*LeafSpec.*")
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
# val/test loss come from a torchmetrics Metric that already sums over ranks: no sync_dist needed
warnings.filterwarnings("ignore", message=".*sync_dist=True.*when logging on epoch level.*")

TRAINER_DEFAULTS = {
    "default_root_dir": "runs",
    "max_steps": 300,
    "val_check_interval": 100,
    "check_val_every_n_epoch": None,
    "log_every_n_steps": 10,
    "gradient_clip_val": 1.0,
    "use_distributed_sampler": False,  # our sampler is rank-aware and resumable
}


@dataclass
class WandbOptions:
    project: str = "lit-llm"
    """W&B project."""
    name: str | None = None
    """Run name (default: W&B's)."""
    group: str | None = None
    """Run group, e.g. a sweep or experiment name."""
    mode: Literal["auto", "offline", "online", "disabled"] = "auto"
    """auto: online when WANDB_MODE=online or an API key is configured, else offline; disabled: no W&B."""
    tags: list[str] | None = None
    """Run tags, e.g. '[baseline, rope]'."""
    log_model: bool | Literal["all"] = False
    """Upload checkpoints as W&B artifacts (online only): true = at the end, all = every checkpoint."""


def wandb_has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    import netrc

    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_wandb_mode(mode: str) -> str:
    if mode == "auto":
        env = os.environ.get("WANDB_MODE", "")
        if env in ("offline", "disabled", "online"):
            mode = env
        else:
            mode = "online" if wandb_has_credentials() else "offline"
    if mode == "online" and not wandb_has_credentials():
        print("lit-llm: warning: W&B online requested without credentials; logging offline "
              "(`wandb login`, then `wandb sync` the run)", file=sys.stderr)
        mode = "offline"
    return mode


def make_loggers(root: str, opts: WandbOptions, resume: dict | None = None) -> list:
    """CSV (first: its directory is trainer.log_dir) and W&B; resume continues a checkpoint's logs."""
    resume = resume or {}
    csv_version = resume.get("csv_version")
    loggers = [ResumableCSVLogger(save_dir=root, name="lightning_logs", version=csv_version,
                                  resume_step=resume.get("global_step") if csv_version is not None else None,
                                  pending_row=resume.get("pending_row"))]
    mode = resolve_wandb_mode(opts.mode)
    if mode != "disabled":
        wandb_id = resume.get("wandb_id")
        log_model = opts.log_model
        if log_model and mode == "offline":  # W&B refuses artifacts offline
            print("lit-llm: warning: --wandb.log_model needs W&B online; checkpoints are not uploaded", file=sys.stderr)
            log_model = False
        # absolute: W&B's background service may run in another working directory. Under `wandb agent`
        # W&B groups the run by its sweep: a group is passed only when one is given.
        loggers.append(ResumableWandbLogger(save_dir=os.path.abspath(root), project=opts.project, name=opts.name,
                                   group=opts.group, tags=opts.tags, log_model=log_model,
                                   offline=mode == "offline", id=wandb_id, resume="allow" if wandb_id else None))
    return loggers


def resume_facts(ckpt_path: str | None, checkpoint_dir: str | None) -> dict | None:
    """The run facts of the checkpoint a fit resumes from (None for a fresh fit)."""
    from lit_llm.resume import newest_last_checkpoint, read_checkpoint_meta

    if not ckpt_path:
        return None
    if ckpt_path == "last":
        path = newest_last_checkpoint(checkpoint_dir) if checkpoint_dir else None
        return read_checkpoint_meta(path) if path else None
    if ckpt_path in ("best", "hpc") or "://" in ckpt_path:
        return None
    return read_checkpoint_meta(ckpt_path)


def ensure_writable(root: str) -> None:
    """Fail before training, not at the first checkpoint, when the output directory cannot be written."""
    probe = Path(root) / f".write-test-{os.getpid()}"
    try:
        Path(root).mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise LitLLMError(f"cannot write to --trainer.default_root_dir {root}: {err.strerror or err}") from None


def flatten(config: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and "class_path" not in value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


class LoggedConfig(SaveConfigCallback):
    """Saves config.yaml (LightningCLI's) and also logs the whole config, flat (`model.n_layer`), to
    every logger and into the run summary."""

    def setup(self, trainer, pl_module, stage) -> None:
        ckpt_path = self.config.get("ckpt_path")
        if stage == "fit" and ckpt_path:
            # config.yaml re-saved by a resume holds its settings but not the resume pointer: re-running the
            # file (`--config`) starts the run afresh instead of resuming whatever `last` is by then
            self.config.ckpt_path = None
        try:
            super().setup(trainer, pl_module, stage)
        finally:
            if ckpt_path:
                self.config.ckpt_path = ckpt_path

    def save_config(self, trainer, pl_module, stage) -> None:
        dumped = yaml.safe_load(self.parser.dump(self.config, skip_link_targets=False, skip_none=False))
        dumped = dumped.get(stage_key(dumped), dumped)
        flat = flatten({k: v for k, v in dumped.items() if k not in ("config", "subcommand")})
        # values resolved at instantiation, which the parsed config cannot show
        flat["model.vocab_size"] = pl_module.hparams.get("vocab_size")
        if trainer.checkpoint_callback is not None:
            flat["checkpoint.dirpath"] = trainer.checkpoint_callback.dirpath
        flat.update(resolved_sizes(trainer, pl_module))
        flat.update(run_facts())  # git commit, package versions
        for logger in trainer.loggers:
            logger.log_hyperparams(flat)
        for callback in trainer.callbacks:
            if isinstance(callback, RunSummary):
                callback.config = flat


def resolved_sizes(trainer, pl_module) -> dict:
    """The step sizes after --max_tokens / --tokens_per_step and the device count are applied."""
    dm = trainer.datamodule
    sizes = {"resolved.world_size": trainer.world_size, "resolved.max_steps": trainer.max_steps,
             "resolved.accumulate_grad_batches": trainer.accumulate_grad_batches}
    if dm is not None and hasattr(dm, "batch_size") and hasattr(dm, "block_size"):
        sizes["resolved.tokens_per_step"] = (dm.batch_size * dm.block_size * trainer.world_size
                                             * trainer.accumulate_grad_batches)
    return sizes


def stage_key(dumped: dict) -> str:
    return next((k for k in ("fit", "validate", "test", "predict") if k in dumped), "")


def add_checkpoint_arguments(parser, monitor: str, mode: str) -> None:
    """The forced `--checkpoint.*` callback (RunCheckpoint: atomic, periodic, on signals): last.ckpt plus
    the best by `monitor`, named after it."""
    parser.add_lightning_class_args(RunCheckpoint, "checkpoint")
    parser.set_defaults({
        "checkpoint.monitor": monitor,
        "checkpoint.mode": mode,
        "checkpoint.save_top_k": 1,
        "checkpoint.save_last": True,
        "checkpoint.filename": f"best-step{{step:06d}}-{monitor.replace('/', '_')}{{{monitor}:.4f}}",
        "checkpoint.auto_insert_metric_name": False,
    })


class LitLLMCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        add_checkpoint_arguments(parser, monitor="val/loss", mode="min")
        parser.add_lightning_class_args(Throughput, "throughput")
        parser.add_lightning_class_args(GeneratedSamples, "samples")
        parser.add_class_arguments(WandbOptions, "wandb")
        parser.add_argument("--max_tokens", type=float | None, default=None,
                            help="training budget in tokens; sets trainer.max_steps from the global batch")
        parser.add_argument("--tokens_per_step", type=int | None, default=None,
                            help="global batch in tokens; sets trainer.accumulate_grad_batches from the micro-batch "
                                 "(data.batch_size x data.block_size) and the number of devices")
        parser.link_arguments("data.block_size", "model.block_size")
        parser.link_arguments("data.model_vocab_size", "model.vocab_size", apply_on="instantiate")

    def _parse_ckpt_path(self) -> None:
        """Resuming takes the model's settings from the checkpoint (as LightningCLI does); an architecture
        option given on the command line that contradicts the checkpoint is an error, not silently dropped.
        Unreadable checkpoints get one line instead of a traceback."""
        from lit_llm.module import ARCHITECTURE_FIELDS
        from lit_llm.resume import load_checkpoint_lazily

        sub = self.config.get("subcommand")
        path = self.config[sub].get("ckpt_path") if sub else None
        if not path or not Path(path).is_file():
            return
        hparams = {k: v for k, v in load_checkpoint_lazily(path).get("hyper_parameters", {}).items()
                   if not k.startswith("_")}
        if not hparams:
            return
        model = self.config[sub].model
        default = self._subcommand_parsers[sub].get_defaults().model  # an option at its default claims nothing
        diffs = [f"{k}: checkpoint {hparams[k]!r}, this run {model.get(k)!r}" for k in ARCHITECTURE_FIELDS
                 if k in hparams and k not in ("vocab_size", "block_size") and model.get(k) != hparams[k]
                 and model.get(k) != default.get(k)]
        if diffs:
            raise LitLLMError(f"{path} is of another model ({'; '.join(diffs)}); drop those options to resume it")
        self.config = self.parser.parse_object({sub: {"model": hparams}}, self.config)

    def before_instantiate_classes(self) -> None:
        from lit_llm.finetune import apply_init_from

        apply_init_from(self.config[self.subcommand] if self.subcommand else self.config)

    def instantiate_trainer(self, **kwargs):
        config = self._get(self.config_init, "trainer", default={})
        root = config.get("default_root_dir") or TRAINER_DEFAULTS["default_root_dir"]
        checkpoint = self._get(self.config_init, "checkpoint")
        if checkpoint is not None and checkpoint.dirpath is None:
            # <root>/checkpoints whatever the logger, so `--ckpt_path last` always finds them
            checkpoint.dirpath = os.path.realpath(os.path.join(root, "checkpoints"))
        if self.subcommand == "fit":
            self._check_step_limit(config)
        ensure_writable(root)
        if config.get("logger") in (None, True):
            kwargs["logger"] = make_loggers(root, self._get(self.config_init, "wandb"), self._resume_facts(checkpoint))
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()  # a crash mid-save keeps the old file
        self._apply_token_budgets(trainer)
        return trainer

    def _check_step_limit(self, config: dict) -> None:
        max_steps = config.get("max_steps", -1)
        endless = max_steps == -1 and not config.get("max_time") and not self._get(self.config, "max_tokens")
        if max_steps == 0 or max_steps < -1 or endless:
            raise LitLLMError(f"--trainer.max_steps must be positive, got {max_steps} (the training data is "
                              "an endless stream: -1 only with --trainer.max_time and --model.lr_decay_steps)")

    def _resume_facts(self, checkpoint) -> dict | None:
        """The facts of the checkpoint a fit resumes from, checked against this run before any log continues:
        a checkpoint that cannot be resumed changes nothing on disk."""
        if self.subcommand != "fit":
            return None
        resume = resume_facts(self._get(self.config, "ckpt_path"), checkpoint.dirpath if checkpoint else None)
        model, data = self._get(self.config_init, "model"), self._get(self.config_init, "data")
        if resume and hasattr(model, "check_compatible") and hasattr(data, "prepared"):
            model.check_compatible(resume["lit_llm"], (data.prepared.path / "tokenizer.json").read_text())
        return resume

    def _apply_token_budgets(self, trainer) -> None:
        """--tokens_per_step sets the accumulation, --max_tokens the step count (both need the world size)."""
        data = self._get(self.config_init, "data")
        tokens_per_step = self._get(self.config, "tokens_per_step")
        if tokens_per_step:
            micro = data.batch_size * data.block_size * trainer.world_size
            if tokens_per_step % micro:
                raise LitLLMError(f"--tokens_per_step {tokens_per_step} is not a multiple of batch_size x "
                                  f"block_size x devices = {micro}")
            trainer.accumulate_grad_batches = tokens_per_step // micro
        max_tokens = self._get(self.config, "max_tokens")
        if max_tokens:
            if max_tokens <= 0:
                raise LitLLMError(f"--max_tokens must be positive, got {max_tokens}")
            per_step = data.batch_size * data.block_size * trainer.world_size * trainer.accumulate_grad_batches
            trainer.fit_loop.epoch_loop.max_steps = max(1, math.ceil(max_tokens / per_step))

    def _instantiate_trainer(self, config, callbacks):
        callbacks = list(callbacks) + [RunSummary(), FinalValidation(), PredictionWriter(), WandbRun()]
        user = config.get("callbacks") or []
        if config.get("enable_progress_bar", True) is not False and not any(
            type(c).__name__.endswith("ProgressBar") for c in user
        ):
            callbacks.append(StepProgressBar())
        return super()._instantiate_trainer(config, callbacks)


def run_cli(args: list[str] | None) -> None:
    """LightningCLI; args None reads sys.argv (LightningCLI warns when given both)."""
    LitLLMCLI(
        LanguageModel,
        TextDataModule,
        trainer_defaults=TRAINER_DEFAULTS,
        seed_everything_default=1337,
        save_config_callback=LoggedConfig,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "lit-llm"},
        args=args,
    )


def prepare_main(args: list[str]) -> None:
    """lit-llm prepare --data.corpus ... [--out DIR]: build (or find) the prepared data and report it."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    from lit_llm.data.prepare import prepare, print_summary

    parser = ArgumentParser(prog="lit-llm prepare", description="Tokenize a corpus into shards.")
    parser.add_argument("-c", "--config", action=ActionConfigFile)
    parser.add_class_arguments(TextDataModule, "data")
    parser.add_argument("--out", type=str | None, default=None, help="output directory (default: the cache)")
    cfg = parser.instantiate_classes(parser.parse_args(args))
    dm: TextDataModule = cfg.data
    prepared = prepare(dm.prepare_config, dm.cache_dir, Path(cfg.out) if cfg.out else None, log=lambda *_: None)
    print_summary(prepared.path, prepared.meta, print)
    print(f"use it with: --data.corpus {prepared.path}")


def generate_main(args: list[str]) -> None:
    """lit-llm generate --checkpoint CKPT --prompt TEXT [...]"""
    from jsonargparse import ArgumentParser

    from lit_llm.generate import generate_text, load_checkpoint

    parser = ArgumentParser(prog="lit-llm generate", description="Sample text from a checkpoint.")
    parser.add_argument("--checkpoint", type=str, required=True, help="a lit_llm .ckpt file")
    parser.add_argument("--prompt", type=str, default="\n", help="text to continue")
    parser.add_argument("--max_new_tokens", type=int, default=200)
    parser.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    parser.add_argument("--top_k", type=int | None, default=200)
    parser.add_argument("--top_p", type=float | None, default=None)
    parser.add_argument("--num_samples", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--device", type=str, default="cpu")
    parser.add_argument("--quantize", type=Literal["none", "int8"], default="none",
                        help="int8: dynamic int8 quantization of the Linear layers (CPU)")
    cfg = parser.parse_args(args)
    if cfg.max_new_tokens < 0 or cfg.num_samples < 1:
        raise LitLLMError("--max_new_tokens must be >= 0 and --num_samples >= 1")
    module, tokenizer = load_checkpoint(cfg.checkpoint)
    module.to(cfg.device)
    if cfg.quantize == "int8":
        from lit_llm.compress import quantize_int8

        if cfg.device != "cpu":
            raise LitLLMError("--quantize int8 runs on the CPU: drop --device")
        module.model = quantize_int8(module.model)
    texts = generate_text(module.model, tokenizer, cfg.prompt, cfg.max_new_tokens, cfg.temperature,
                          cfg.top_k, cfg.top_p, cfg.num_samples, cfg.seed)
    for i, text in enumerate(texts):
        if len(texts) > 1:
            print(f"--- sample {i + 1}")
        print(text)


def sweep_main(args: list[str]) -> int:
    """lit-llm sweep FILE: run a W&B sweep file offline."""
    from lit_llm.cli_new.sweep import main as run

    return run(args)


def scaling_main(args: list[str]) -> int:
    from lit_llm.cli_new.scaling import main as run

    return run(args)


def report_main(args: list[str]) -> int:
    from lit_llm.cli_new.report import main as run

    return run(args)


def close_process_group(barrier: bool) -> None:
    """Destroy the process group before exit: left to interpreter shutdown, gloo's threads can abort the
    process. After success, ranks first wait for each other, so rank 0's store outlives the others' use."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if barrier:
            dist.barrier()
        dist.destroy_process_group()


def convert_main(args: list[str]) -> None:
    from lit_llm.convert import convert_main as run

    run(args)


def classify_main(args: list[str]) -> int:
    from lit_llm.classify.cli import classify_main as run

    return run(args)


COMMANDS = {"prepare": prepare_main, "generate": generate_main, "sweep": sweep_main, "scaling": scaling_main,
            "report": report_main, "convert": convert_main, "classify": classify_main}


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and args[0] in COMMANDS:
            return COMMANDS[args[0]](args[1:]) or 0
        else:
            run_cli(None if argv is None else args)
            close_process_group(barrier=True)
    except LitLLMError as err:
        print(f"lit-llm: error: {err}", file=sys.stderr)
        return 2
    except MisconfigurationException as err:  # e.g. configs/trainer/gpu.yaml on a machine without a GPU
        print(f"lit-llm: error: {err} (Lightning; check --trainer.accelerator/devices/strategy)", file=sys.stderr)
        return 2
    except SIGTERMException:  # RunCheckpoint saved last.ckpt at the end of the step
        print("lit-llm: stopped by SIGTERM/SIGUSR1 (during training, last.ckpt is saved first: resume with "
              "--ckpt_path last)", file=sys.stderr)
        return 143
    except BrokenPipeError:  # output piped into `head` and the like
        return 0
    except KeyboardInterrupt:
        print("lit-llm: interrupted", file=sys.stderr)
        return 130
    finally:
        close_process_group(barrier=False)
        if "wandb" in sys.modules:
            import wandb

            if wandb.run is not None:
                wandb.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
