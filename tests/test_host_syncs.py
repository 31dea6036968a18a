"""lit_llm code reads no tensor value (on a GPU: a host-device sync that stalls the queue) on training steps
that do not log; each read it makes on logging steps says so in a comment."""

import linecache
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback

import lit_llm
from lit_llm.cli.main import main
from lit_llm.training.lightning_internals import should_log, validation_follows

PACKAGE = str(Path(lit_llm.__file__).parent)
READS = ("item", "__bool__", "__float__", "__int__", "__index__", "tolist", "numpy", "cpu")
PHASE: dict = {"now": None}  # ("log" | "boundary" | "quiet", step) from a step's start to the next one's; None in validation
RECORDED: list = []


SAVE_EVERY = 3  # --checkpoint.every_n_train_steps below


class Phase(Callback):
    """"log": a logging step; "boundary": a step followed by a validation or a checkpoint save, which read
    values by nature (the save copies every weight to the host); "quiet": any other step."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        boundary = validation_follows(trainer) or (trainer.global_step + 1) % SAVE_EVERY == 0
        PHASE["now"] = ("log" if should_log(trainer) else "boundary" if boundary else "quiet", trainer.global_step)

    def on_validation_start(self, trainer, pl_module) -> None:
        PHASE["now"] = None

    def on_train_end(self, trainer, pl_module) -> None:
        PHASE["now"] = None


def caller() -> str:
    """file:line of the code that called the tensor method (lit_llm's, Lightning's, anyone's)."""
    frame = sys._getframe(2)
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


@pytest.fixture
def record_reads(monkeypatch):
    RECORDED.clear()
    for name in READS:
        original = getattr(torch.Tensor, name)

        def read(self, *args, _original=original, _name=name, **kwargs):
            where = caller()
            if PHASE["now"] is not None:
                RECORDED.append((PHASE["now"], _name, where))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, read)
    return RECORDED


def test_no_tensor_reads_between_logging_steps(record_reads, tiny_text, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    assert main(["fit", "--config", str(Path(__file__).parents[1] / "configs/model/toy.yaml"),
                 "--data.corpus", str(tiny_text), "--data.tokenizer", "char", "--data.block_size", "16",
                 "--data.batch_size", "4", "--trainer.max_steps", "12", "--trainer.log_every_n_steps", "4",
                 "--trainer.val_check_interval", "6", "--checkpoint.every_n_train_steps", str(SAVE_EVERY),
                 "--trainer.default_root_dir", str(tmp_path / "runs"), "--wandb.mode", "offline",
                 "--trainer.callbacks+=test_host_syncs.Phase"]) == 0  # the progress bar on, as for users
    # nobody reads a value between logging steps: not lit_llm, not Lightning (a prog_bar metric would be
    # converted after every batch), not the progress bar
    quiet = [r for r in record_reads if r[0][0] == "quiet"]
    assert not quiet, quiet
    logging = {where for (kind, _), _, where in record_reads if kind != "quiet" and where.startswith(PACKAGE)}
    assert logging, "the probe saw no read at all: it would prove nothing"
    for where in logging:
        path, line = where.rsplit(":", 1)
        context = "".join(linecache.getline(path, n) for n in range(int(line) - 2, int(line) + 1))
        assert "sync" in context, f"{where}: a read on logging steps without a comment that it syncs"
