"""The one door to Lightning's private names.

lit_llm needs a few things Lightning keeps private: whether this step's metrics are written, the step
number rows are logged at, the metrics of a step not yet written, a stop at the end of the step, the
CLI's checkpoint-hyper-parameter and trainer-building steps, ModelCheckpoint's save helpers and the
loggers' lazily created experiments. Every such access is here, one small function or class each, each
with a contract test (tests/test_lightning_internals.py), and nowhere else (tests/test_architecture.py
checks). `check_version` refuses a Lightning outside the range those tests ran on, with a clear message,
rather than failing somewhere deep in a run.
"""

from __future__ import annotations

from pathlib import Path

import lightning
import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint, ModelPruning, RichProgressBar
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from lit_llm.checkpoints import read_checkpoint
from lit_llm.errors import LitLLMError

TESTED_MINOR = (2, 6)  # pyproject pins lightning to this minor release


def check_version(version: str = lightning.__version__) -> None:
    major_minor = tuple(int(part) for part in version.split(".")[:2])
    if major_minor != TESTED_MINOR:
        raise LitLLMError(f"lit_llm was tested with lightning {TESTED_MINOR[0]}.{TESTED_MINOR[1]}.x and uses some of "
                          f"its internals; this is {version}: pip install 'lightning>=2.6,<2.7'")


# --- the trainer and its loops ---------------------------------------------------------------------
def trainer_or_none(module: L.LightningModule) -> L.Trainer | None:
    """The module's trainer, or None when it runs outside one (`module.trainer` raises then)."""
    return module._trainer


def should_log(trainer: L.Trainer) -> bool:
    """True on the steps whose metrics Lightning writes (log_every_n_steps, and the last step)."""
    return trainer._logger_connector.should_update_logs


def is_accumulating(trainer: L.Trainer) -> bool:
    """True for a micro-batch that is not the last of its optimizer step."""
    return trainer.fit_loop._should_accumulate()


def log_step(trainer: L.Trainer) -> int:
    """The step number Lightning writes training rows at (it counts optimizer steps taken)."""
    return trainer.fit_loop.epoch_loop._batches_that_stepped


def set_log_step(trainer: L.Trainer, step: int) -> None:
    trainer.fit_loop.epoch_loop._batches_that_stepped = step


def pending_step_metrics(trainer: L.Trainer) -> dict[str, float]:
    """The current training step's logged metrics, which Lightning writes only after the step's hooks.
    Reads every value (a sync on a GPU): call it on logging steps only."""
    results = trainer._results
    return {k: float(v) for k, v in results.metrics(on_step=True)["log"].items()} if results is not None else {}


def stop_after_this_step(trainer: L.Trainer) -> None:
    """Lightning then raises SIGTERMException at the end of the step, as after its own SIGTERM handler."""
    trainer._signal_connector.received_sigterm = True


def validation_follows(trainer: L.Trainer) -> bool:
    """Whether Lightning runs a validation after the current training batch."""
    if not trainer.enable_validation or not sum(trainer.num_val_batches or [0]):
        return False
    return bool(trainer.fit_loop.epoch_loop._should_check_val_fx(trainer.fit_loop._data_fetcher))


# --- ModelCheckpoint --------------------------------------------------------------------------------
class CheckpointHooks(ModelCheckpoint):
    """ModelCheckpoint with public names for the private helpers and state a subclass needs."""

    def last_saved_step(self) -> int:
        return self._last_global_step_saved

    def write_last_checkpoint(self, trainer: L.Trainer) -> None:
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def write_best_checkpoint(self, trainer: L.Trainer) -> None:
        """The top-k file by the monitored metric, when the metric exists yet (or nothing is monitored)."""
        candidates = self._monitor_candidates(trainer)
        if self.monitor is None or self.monitor in candidates:
            self._save_topk_checkpoint(trainer, candidates)

    def skips_saving(self, trainer: L.Trainer) -> bool:
        return self._should_skip_saving_checkpoint(trainer)

    def periodic_steps(self) -> int:
        return self._every_n_train_steps

    def time_interval_seconds(self) -> float | None:
        interval = self._train_time_interval
        return interval.total_seconds() if interval is not None else None

    def last_time_checked(self) -> float | None:
        return self._last_time_checked

    def set_last_time_checked(self, now: float) -> None:
        self._last_time_checked = now

    def defer_save_until_validation(self) -> None:
        """ModelCheckpoint.on_validation_end then saves (Lightning's own mechanism for this)."""
        self._defer_save_until_validation = True


# --- ModelPruning -----------------------------------------------------------------------------------
def set_pruning_targets(callback: ModelPruning, parameters: list) -> None:
    """The (module, name) pairs ModelPruning prunes (its setup() finds them; ours are built later)."""
    callback._parameters_to_prune = parameters


# --- the progress bar --------------------------------------------------------------------------------
class ProgressBarHooks(RichProgressBar):
    """RichProgressBar with a public hook for the training bar's label."""

    def _get_train_description(self, current_epoch: int) -> str:
        return self.train_description(current_epoch)

    def train_description(self, current_epoch: int) -> str:
        return super()._get_train_description(current_epoch)


# --- loggers ----------------------------------------------------------------------------------------
def wandb_run_started(logger: WandbLogger) -> bool:
    """Whether the W&B run exists (asking `logger.experiment` would start one)."""
    return logger._experiment is not None


def wandb_init_settings(logger: WandbLogger) -> dict:
    """The keyword arguments WandbLogger will pass to wandb.init (mutable until the run starts)."""
    return logger._wandb_init


def forget_wandb_run_id(logger: WandbLogger) -> None:
    """Start a new W&B run instead of resuming the configured id."""
    logger._wandb_init.pop("id", None)
    logger._wandb_init.pop("resume", None)
    logger._id = None


def csv_experiment(logger: CSVLogger, make_writer) -> ExperimentWriter:
    """CSVLogger's experiment, created once by make_writer(log_dir) (call it on rank zero only)."""
    if logger._experiment is None:
        logger._fs.makedirs(logger.root_dir, exist_ok=True)
        logger._experiment = make_writer(logger.log_dir)
    return logger._experiment


class ContinuingWriter(ExperimentWriter):
    """Lightning's CSV writer deletes an existing metrics.csv in its directory; this one keeps it, after
    `prepare(path)` has rewritten it (prepare returns the file's column names, or None when it is absent)."""

    def __init__(self, log_dir: str, prepare) -> None:
        self._prepare = prepare
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        keys = self._prepare(self.metrics_file_path)
        if keys is not None:
            self.metrics_keys = keys


# --- LightningCLI -----------------------------------------------------------------------------------
class CLIHooks(LightningCLI):
    """LightningCLI with public hooks where lit_llm changes private steps:
    - `checkpoint_hparams_to_config(path, hparams)`: how a --ckpt_path's hyper-parameters enter the config
      (Lightning replaces the command line's model options with them silently);
    - `extra_callbacks(trainer_config, forced)`: callbacks every run gets, besides the forced ones;
    - `value(config, key)`: a value of the current subcommand's (parsed or instantiated) config;
    - `defaults(subcommand)`: the subcommand parser's defaults, to tell a default from a user's choice."""

    def _parse_ckpt_path(self) -> None:
        sub = self.config.get("subcommand")
        path = self.config[sub].get("ckpt_path") if sub else None
        if not path:
            return
        if not Path(path).is_file():
            return
        hparams = {k: v for k, v in read_checkpoint(path).get("hyper_parameters", {}).items() if not k.startswith("_")}
        if hparams:
            self.checkpoint_hparams_to_config(path, hparams)

    def checkpoint_hparams_to_config(self, path: str, hparams: dict) -> None:
        sub = self.config["subcommand"]
        self.config = self.parser.parse_object({sub: {"model": hparams}}, self.config)

    def _instantiate_trainer(self, config, callbacks):
        return super()._instantiate_trainer(config, list(callbacks) + self.extra_callbacks(config, list(callbacks)))

    def extra_callbacks(self, trainer_config: dict, forced: list) -> list:
        """forced: the callbacks LightningCLI made from the parser's forced callback options."""
        return []

    def value(self, config, key: str, default=None):
        return self._get(config, key, default=default)

    def defaults(self, subcommand: str):
        return self._subcommand_parsers[subcommand].get_defaults()
