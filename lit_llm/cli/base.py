"""The LightningCLI base shared by `lit-llm fit|validate|test|predict` and `lit-llm classify`.

Run outputs under --trainer.default_root_dir:
  checkpoints/               last.ckpt and the best by the monitored metric (--checkpoint.*)
  lightning_logs/version_N/  metrics.csv, config.yaml, hparams.yaml, summary.json (+ samples.jsonl, predictions.jsonl)
  wandb/                     W&B run directories (offline unless logged in or WANDB_MODE=online)
"""

from __future__ import annotations

import inspect
import logging
import os
import warnings
from pathlib import Path

import yaml
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lit_llm.errors import LitLLMError
from lit_llm.model.gpt import ARCH_FIELDS
from lit_llm.training.callbacks.lifecycle import FinalValidation
from lit_llm.training.callbacks.progress import ModelOverview, StepProgressBar
from lit_llm.training.callbacks.summary import RunSummary, WandbRun
from lit_llm.training.callbacks.throughput import Throughput
from lit_llm.training.checkpointing import AtomicCheckpointIO, RunCheckpoint
from lit_llm.training.lightning_internals import CLIHooks, check_version
from lit_llm.training.loggers import WandbOptions, make_loggers, run_facts
from lit_llm.training.resume import ResumeState, resume_facts
from lit_llm.training.rundirs import start_run

# noise from Lightning internals that a user cannot act on
warnings.filterwarnings("ignore", message=".*treespec.*LeafSpec.*")
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
# an epoch fit resumes mid-epoch exactly: its position is the data module's state (TextDataModule.state_dict)
warnings.filterwarnings("ignore", message=".*checkpoint that ended before the epoch ended.*")
# val/test loss come from a torchmetrics Metric that already sums over ranks: no sync_dist needed
warnings.filterwarnings("ignore", message=".*sync_dist=True.*when logging on epoch level.*")

class DropLitLoggerTip(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()  # an advertisement, and a note on our own model overview
        return "litlogger" not in message and "Skipping setting a default `ModelSummary`" not in message


for _name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
    logging.getLogger(_name).addFilter(DropLitLoggerTip())

TRAINER_DEFAULTS = {
    "default_root_dir": "runs",
    "max_steps": 300,
    "val_check_interval": 100,
    "check_val_every_n_epoch": None,
    "log_every_n_steps": 10,
    "gradient_clip_val": 1.0,
    "use_distributed_sampler": False,  # our sampler is rank-aware and resumable
}


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


def stage_key(dumped: dict) -> str:
    return next((k for k in ("fit", "validate", "test", "predict") if k in dumped), "")


def resolved_sizes(trainer) -> dict:
    """The step sizes after --max_tokens / --tokens_per_step and the device count are applied."""
    dm = trainer.datamodule
    sizes = {"resolved.world_size": trainer.world_size, "resolved.max_steps": trainer.max_steps,
             "resolved.accumulate_grad_batches": trainer.accumulate_grad_batches}
    if dm is not None and hasattr(dm, "batch_size") and hasattr(dm, "block_size"):
        sizes["resolved.tokens_per_step"] = (dm.batch_size * dm.block_size * trainer.world_size
                                             * trainer.accumulate_grad_batches)
    return sizes


class LoggedConfig(SaveConfigCallback):
    """Saves config.yaml (LightningCLI's) and also logs the whole config, flat (`model.n_layer`), to every
    logger and into the run summary it is given."""

    def __init__(self, *args, summary: RunSummary | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.summary = summary

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
        flat.update(resolved_sizes(trainer))
        flat.update(run_facts())  # git commit, package versions
        for logger in trainer.loggers:
            logger.log_hyperparams(flat)
        if self.summary is not None:
            self.summary.config = flat


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


class BaseCLI(CLIHooks):
    """Runs follow one set of conventions: checkpoints in <root>/checkpoints (so `--ckpt_path last` finds
    them), crash-safe checkpoint writes, CSV + W&B loggers that a resume continues, the flat config logged
    everywhere, summary.json, a final validation and last.ckpt at the final step, exact resume."""

    def __init__(self, *args, save_config_kwargs: dict | None = None, **kwargs) -> None:
        check_version()
        self.run_summary = RunSummary()
        self.resume: dict | None = None
        kwargs.setdefault("save_config_callback", LoggedConfig)
        super().__init__(*args, save_config_kwargs={"overwrite": True, "summary": self.run_summary,
                                                    **(save_config_kwargs or {})}, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_class_arguments(WandbOptions, "wandb")

    def checkpoint_hparams_to_config(self, path: str, hparams: dict) -> None:
        """Resuming takes the model's settings from the checkpoint (as LightningCLI does); an architecture
        option given on the command line that contradicts the checkpoint is an error, not silently dropped."""
        sub = self.config["subcommand"]
        model = self.config[sub].model
        unknown = sorted(set(hparams) - set(inspect.signature(self.model_class).parameters))
        if unknown:
            raise LitLLMError(f"{path} was saved by another kind of model ({', '.join(unknown)} unknown to "
                              f"{self.model_class.__name__}): language models go with `lit-llm fit|validate|test`, "
                              "classifiers with `lit-llm classify`")
        default = self.defaults(sub).model  # an option at its default claims nothing
        diffs = [f"{k}: checkpoint {hparams[k]!r}, this run {model.get(k)!r}" for k in ARCH_FIELDS
                 if k in hparams and k not in ("vocab_size", "block_size") and model.get(k) != hparams[k]
                 and model.get(k) != default.get(k)]
        if diffs:
            raise LitLLMError(f"{path} is of another model ({'; '.join(diffs)}); drop those options to resume it")
        super().checkpoint_hparams_to_config(path, hparams)

    def instantiate_trainer(self, **kwargs):
        config = self.value(self.config_init, "trainer", default={})
        root = config.get("default_root_dir") or TRAINER_DEFAULTS["default_root_dir"]
        checkpoint = self.value(self.config_init, "checkpoint")
        if checkpoint is not None and checkpoint.dirpath is None:
            # <root>/checkpoints whatever the logger, so `--ckpt_path last` always finds them
            checkpoint.dirpath = os.path.realpath(os.path.join(root, "checkpoints"))
        self.before_trainer(config)
        if self.subcommand == "fit":
            start_run(root, checkpoint.dirpath if checkpoint else None)  # a fit that fails before its first logged step leaves no folders behind
        ensure_writable(root)
        if self.subcommand == "fit":
            data = self.value(self.config_init, "data")
            self.resume = resume_facts(self.value(self.config, "ckpt_path"), checkpoint.dirpath if checkpoint else None,
                                       type(data).__qualname__ if data is not None else None)
            if self.resume:
                self.check_resume(self.resume)  # before any log is continued or rewritten
        if config.get("logger") in (None, True):
            kwargs["logger"] = make_loggers(root, self.value(self.config_init, "wandb"), self.resume)
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()  # a crash mid-save keeps the old file
        self.after_trainer(trainer)
        return trainer

    def before_trainer(self, trainer_config: dict) -> None:
        """Checks of the trainer options before anything is written."""

    def check_resume(self, resume: dict) -> None:
        """Refuse a checkpoint that cannot be resumed by this run, before anything on disk changes."""

    def after_trainer(self, trainer) -> None:
        """Settings that need the trainer (its world size)."""

    def extra_callbacks(self, trainer_config: dict, forced: list) -> list:
        self.run_summary.throughput = next((c for c in forced if isinstance(c, Throughput)), None)
        callbacks = [self.run_summary, FinalValidation(), WandbRun(), ResumeState(), ModelOverview()]
        user = trainer_config.get("callbacks") or []
        if trainer_config.get("enable_progress_bar", True) is not False and not any(
                isinstance(c, ProgressBar) for c in user):
            callbacks.append(StepProgressBar())
        return callbacks
