"""Checkpoints that survive crashes: atomic writes, periodic saves that do not wait for validation, and a
last checkpoint on SIGTERM / SIGUSR1 (preemption, SLURM requeue) before the process exits.

A checkpoint is written to a hidden temporary file beside its destination, flushed to disk, then renamed
over it: a kill or a full disk during a save leaves the previous checkpoint whole.
"""

from __future__ import annotations

import io
import os
import signal
import sys
import time
from pathlib import Path

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lit_llm.errors import LitLLMError

TMP_MARK = ".tmp-"
SAVE_DELAY_ENV = "LIT_LLM_TEST_SAVE_DELAY"  # test hook: seconds to pause halfway through writing a checkpoint


def is_tmp_checkpoint(path: Path) -> bool:
    return path.name.startswith(".") and TMP_MARK in path.name


def remove_stale_tmp_files(directory: str | Path) -> None:
    """Half-written checkpoints of killed processes (never trusted, never loaded)."""
    for path in Path(directory).glob(f".*{TMP_MARK}*"):
        pid = path.name.rsplit(TMP_MARK, 1)[1]
        if pid.isdigit() and not process_alive(int(pid)):
            path.unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save into a temporary file, fsync, rename into place. Errors (disk full, read-only directory)
    become one line that says the previous checkpoint is kept."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if "://" in str(path):  # remote filesystems: Lightning's own writer
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        data = buffer.getbuffer()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                delay = float(os.environ.get(SAVE_DELAY_ENV, 0) or 0)
                if delay:  # fault injection for the kill-during-save test
                    f.write(data[: len(data) // 2])
                    f.flush()
                    time.sleep(delay)
                    f.write(data[len(data) // 2:])
                else:
                    f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            reason = err.strerror or str(err)
            raise LitLLMError(f"cannot write checkpoint {path}: {reason}; the previous checkpoint there is kept "
                              "(free some space or choose another --trainer.default_root_dir)") from None


class RunCheckpoint(ModelCheckpoint):
    """ModelCheckpoint (all its --checkpoint.* options) with three changes:

    1. Periodic saves (every_n_train_steps, train_time_interval) write last.ckpt even before the monitored
       val/loss exists; Lightning defers them until the first validation, so a crash before it lost
       everything. The best-by-val/loss file still waits for the metric.
    2. A periodic save that falls on a step that validates waits for that validation, so the checkpoint
       comes after the validation's log row (a kill between the two would lose the row for good).
    3. On SIGTERM (Lightning's handler) or SIGUSR1 (ours, outside SLURM), last.ckpt is written at the end
       of the current step; Lightning then stops, and `lit-llm` exits with code 143.
    """

    def on_train_start(self, trainer, pl_module) -> None:
        super().on_train_start(trainer, pl_module)
        if self.dirpath and trainer.is_global_zero:
            remove_stale_tmp_files(self.dirpath)
        self._previous_usr1 = None
        if hasattr(signal, "SIGUSR1") and signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, None):
            def request_stop(signum, frame):  # the same path as SIGTERM: save at the step's end, then stop
                trainer._signal_connector.received_sigterm = True

            self._previous_usr1 = signal.signal(signal.SIGUSR1, request_stop)

    def on_train_end(self, trainer, pl_module) -> None:
        super().on_train_end(trainer, pl_module)
        self._restore_usr1()

    def on_exception(self, trainer, pl_module, exception) -> None:
        super().on_exception(trainer, pl_module, exception)
        self._restore_usr1()

    def _restore_usr1(self) -> None:
        if getattr(self, "_previous_usr1", None) is not None:
            signal.signal(signal.SIGUSR1, self._previous_usr1)
            self._previous_usr1 = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._should_skip_saving_checkpoint(trainer):
            return
        if trainer.received_sigterm:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
            if trainer.is_global_zero:
                print(f"lit-llm: stop requested by a signal: saved {self.last_model_path} at step "
                      f"{trainer.global_step}; resume with --ckpt_path last", file=sys.stderr, flush=True)
            return
        if not self._periodic_save_due(trainer):
            return
        if self._validation_follows(trainer):
            self._defer_save_until_validation = True  # ModelCheckpoint.on_validation_end saves then
            return
        candidates = self._monitor_candidates(trainer)
        if self.monitor is None or self.monitor in candidates:
            self._save_topk_checkpoint(trainer, candidates)
        self._save_last_checkpoint(trainer, candidates)

    def _periodic_save_due(self, trainer) -> bool:
        by_steps = self._every_n_train_steps >= 1 and trainer.global_step % self._every_n_train_steps == 0
        by_time = False
        if self._train_time_interval is not None:
            now = time.monotonic()
            last = self._last_time_checked
            by_time = last is not None and now - last >= self._train_time_interval.total_seconds()
            by_time = trainer.strategy.broadcast(by_time)  # clocks differ across ranks: rank 0 decides
            if by_time:
                self._last_time_checked = now
        return by_steps or by_time

    @staticmethod
    def _validation_follows(trainer) -> bool:
        loop = trainer.fit_loop.epoch_loop
        if not trainer.enable_validation or not sum(trainer.num_val_batches or [0]):
            return False
        return bool(loop._should_check_val_fx(trainer.fit_loop._data_fetcher))

