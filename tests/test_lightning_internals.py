"""One contract test per accessor of lit_llm/training/lightning_internals.py: each reads or writes what its
docstring says on the installed Lightning, so an upgrade that moves a private name fails here, by name."""

import inspect

import lightning as L
import pytest
import torch
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from torch.utils.data import DataLoader

from lit_llm.errors import LitLLMError
from lit_llm.training import lightning_internals as door


class Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        loss = self.layer(batch).pow(2).mean()
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self.layer(batch).pow(2).mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Probe(door.CheckpointHooks):
    """Reads every trainer accessor at each training batch end (steps 1..4, accumulation 2, log every 2)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.seen = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seen.append({"accumulating": door.is_accumulating(trainer), "should_log": door.should_log(trainer),
                          "log_step": door.log_step(trainer), "pending": door.pending_step_metrics(trainer),
                          "validation_follows": door.validation_follows(trainer), "step": trainer.global_step,
                          "trainer": door.trainer_or_none(pl_module) is trainer, "skips": self.skips_saving(trainer)})


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    root = tmp_path_factory.mktemp("door")
    probe = Probe(dirpath=root / "ckpt", save_last=True, every_n_train_steps=0, train_time_interval=None)
    data = DataLoader(torch.randn(16, 2), batch_size=2)
    trainer = L.Trainer(max_steps=4, accumulate_grad_batches=2, log_every_n_steps=2, val_check_interval=4,
                        limit_val_batches=1, callbacks=[probe], logger=CSVLogger(root), enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=root)
    trainer.fit(Tiny(), data, data)
    return trainer, probe


def test_check_version_refuses_another_minor():
    door.check_version()
    with pytest.raises(LitLLMError, match="tested with lightning 2.6"):
        door.check_version("2.7.0")


def test_trainer_or_none():
    assert door.trainer_or_none(Tiny()) is None


def test_is_accumulating(probed):
    assert [s["accumulating"] for s in probed[1].seen] == [True, False] * 4


def test_should_log(probed):
    assert [s["should_log"] for s in probed[1].seen if not s["accumulating"]] == [False, True, False, True]


def test_log_step_and_set_log_step(probed):
    trainer, probe = probed
    assert [s["log_step"] for s in probe.seen if not s["accumulating"]] == [0, 1, 2, 3]  # counted after the hook
    door.set_log_step(trainer, 7)
    assert door.log_step(trainer) == 7


def test_pending_step_metrics(probed):
    logged = [s["pending"] for s in probed[1].seen if s["should_log"] and not s["accumulating"]]
    assert all(isinstance(m.get("train/loss"), float) for m in logged)


def test_validation_follows(probed):
    follows = [s["validation_follows"] for s in probed[1].seen if not s["accumulating"]]
    assert follows == [False, True, False, True]  # val_check_interval counts micro-batches


def test_checkpoint_hooks(probed):
    trainer, probe = probed
    assert probe.last_saved_step() == 4
    assert probe.periodic_steps() == 0 and probe.time_interval_seconds() is None
    probe.set_last_time_checked(1.0)
    assert probe.last_time_checked() == 1.0
    probe.write_best_checkpoint(trainer)
    probe.write_last_checkpoint(trainer)
    assert probe.last_model_path.endswith("last.ckpt")
    probe.defer_save_until_validation()
    assert probe._defer_save_until_validation is True  # noqa: SLF001
    # Lightning's rule: skip when this global step was already saved (step 0 counts as saved)
    assert [s["skips"] for s in probe.seen] == [True] + [False] * 7


def test_stop_after_this_step(probed):
    trainer, _ = probed
    door.stop_after_this_step(trainer)
    assert trainer._signal_connector.received_sigterm is True  # noqa: SLF001
    trainer._signal_connector.received_sigterm = False  # noqa: SLF001 (undo for the other tests)


def test_pruning_targets():
    from lightning.pytorch.callbacks import ModelPruning

    pruning = ModelPruning("l1_unstructured")
    layer = torch.nn.Linear(2, 2)
    door.set_pruning_targets(pruning, [(layer, "weight")])
    pruning.apply_pruning(0.5)
    assert int((layer.weight == 0).sum()) == 2


def test_wandb_accessors(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    logger = WandbLogger(save_dir=str(tmp_path), offline=True, id="abc123", resume="allow")
    assert not door.wandb_run_started(logger)
    assert door.wandb_init_settings(logger)["id"] == "abc123"
    door.forget_wandb_run_id(logger)
    assert "id" not in door.wandb_init_settings(logger) and logger.version is None


def test_csv_experiment_and_continuing_writer(tmp_path):
    logger = CSVLogger(tmp_path, name="x", version=0)
    (tmp_path / "x/version_0").mkdir(parents=True)
    (tmp_path / "x/version_0/metrics.csv").write_text("epoch,step,a\n0,0,1.0\n")
    writer = door.csv_experiment(logger, lambda d: door.ContinuingWriter(d, lambda path: ["a", "epoch", "step"]))
    assert writer is door.csv_experiment(logger, lambda d: None)  # created once
    assert (tmp_path / "x/version_0/metrics.csv").read_text().startswith("epoch,step,a")  # kept, not deleted
    assert writer.metrics_keys == ["a", "epoch", "step"]


def test_cli_hooks_override_what_lightning_cli_defines():
    assert list(inspect.signature(LightningCLI._parse_ckpt_path).parameters) == ["self"]
    assert list(inspect.signature(LightningCLI._instantiate_trainer).parameters) == ["self", "config", "callbacks"]
    assert list(inspect.signature(LightningCLI._get).parameters) == ["self", "config", "key", "default"]
    assert "self._subcommand_parsers[" in inspect.getsource(LightningCLI)


def test_progress_bar_hook():
    from lightning.pytorch.callbacks import RichProgressBar

    assert list(inspect.signature(RichProgressBar._get_train_description).parameters) == ["self", "current_epoch"]
