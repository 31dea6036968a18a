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
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lit_llm.checkpoints import TMP_MARK, write_atomically
from lit_llm.errors import LitLLMError
from lit_llm.training.lightning_internals import (CheckpointHooks, should_log, stop_after_this_step,
                                                  validation_follows)


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
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        try:
            write_atomically(path, buffer.getbuffer())
        except OSError as err:
            reason = err.strerror or str(err)
            raise LitLLMError(f"cannot write checkpoint {path}: {reason}; the previous checkpoint there is kept "
                              "(free some space or choose another --trainer.default_root_dir)") from None


STOPPED_BY: dict = {}  # the signal that stopped the last fit of this process, for the CLI's exit code


class RunCheckpoint(CheckpointHooks):
    """ModelCheckpoint (all its --checkpoint.* options) with three changes:

    1. Periodic saves (every_n_train_steps, train_time_interval) write last.ckpt even before the monitored
       val/loss exists; Lightning defers them until the first validation, so a crash before it lost
       everything. The best-by-val/loss file still waits for the metric.
    2. A periodic save that falls on a step that validates waits for that validation, so the checkpoint
       comes after the validation's log row (a kill between the two would lose the row for good).
    3. On SIGTERM, SIGUSR1 (outside SLURM, where Lightning requeues on it) or a first Ctrl-C (SIGINT),
       last.ckpt is written at the end of the current step (after its validation, if it has one); Lightning
       then stops, and `lit-llm` exits with code 143 (130 for Ctrl-C). A second Ctrl-C stops at once. Under DDP the ranks agree on a signal at the next logging step (one boolean
       all-reduce there, none between logging steps).
    """

    clock = staticmethod(time.monotonic)  # of train_time_interval (the time-based save test replaces it)

    def on_train_start(self, trainer, pl_module) -> None:
        super().on_train_start(trainer, pl_module)
        self.set_last_time_checked(self.clock())
        if self.dirpath and trainer.is_global_zero:
            remove_stale_tmp_files(self.dirpath)
        self._stop_signal, self._save_after_validation, self._previous_handlers = None, False, {}
        signals = [signal.SIGTERM, signal.SIGINT] + ([signal.SIGUSR1] if hasattr(signal, "SIGUSR1") else [])
        for signum in signals:
            if signum == signal.SIGUSR1 and signal.getsignal(signum) not in (signal.SIG_DFL, None):
                continue  # SIGUSR1 is Lightning's under SLURM auto-requeue
            if signum == signal.SIGINT and signal.getsignal(signum) is not signal.default_int_handler:
                continue  # Ctrl-C ignored or handled by whoever started us
            self._previous_handlers[signum] = signal.signal(signum, self._request_stop(trainer))

    def _request_stop(self, trainer):
        """Replaces Lightning's SIGTERM handler while training: that one stops validation midway, which would
        lose the validation's row for good; ours lets the current step and its validation finish."""
        def handler(signum, frame):
            if signum == signal.SIGINT and self._stop_signal is not None:
                raise KeyboardInterrupt  # a second Ctrl-C: stop now, without the save
            if self._stop_signal is None and trainer.strategy.launcher is not None:
                trainer.strategy.launcher.kill(signum)  # forward to the ranks this process launched
            if signum == signal.SIGINT and trainer.is_global_zero:
                print("\nlit-llm: Ctrl-C: finishing this step to save last.ckpt (Ctrl-C again to stop at once)",
                      file=sys.stderr, flush=True)
            self._stop_signal = signum
        return handler

    def on_train_end(self, trainer, pl_module) -> None:
        super().on_train_end(trainer, pl_module)
        self._restore_handlers()

    def on_exception(self, trainer, pl_module, exception) -> None:
        super().on_exception(trainer, pl_module, exception)
        self._restore_handlers()

    def _restore_handlers(self) -> None:
        for signum, handler in getattr(self, "_previous_handlers", {}).items():
            signal.signal(signum, handler)
        self._previous_handlers = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.skips_saving(trainer):
            return
        stop = getattr(self, "_stop_signal", None) is not None
        if trainer.world_size > 1:
            if not should_log(trainer):  # agree on it on logging steps only: no collective between them
                return self._periodic_save(trainer)
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)  # any rank signalled: all stop
        if stop:
            if validation_follows(trainer):
                self._save_after_validation = True
            else:
                self._save_and_stop(trainer)
            return
        self._periodic_save(trainer)

    def _periodic_save(self, trainer) -> None:
        if not self._periodic_save_due(trainer):
            return
        if validation_follows(trainer):
            self.defer_save_until_validation()
            return
        self.write_best_checkpoint(trainer)
        self.write_last_checkpoint(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        if getattr(self, "_save_after_validation", False):
            self._save_after_validation = False
            self._save_and_stop(trainer)

    def _save_and_stop(self, trainer) -> None:
        """last.ckpt now; Lightning then raises SIGTERMException at the end of the step (`lit-llm` exits 143)."""
        if self.last_saved_step() != trainer.global_step:
            self.write_last_checkpoint(trainer)
        STOPPED_BY["signal"] = self._stop_signal
        if trainer.is_global_zero:
            print(f"lit-llm: stop requested by a signal: saved {self.last_model_path} at step "
                  f"{trainer.global_step}; resume with --ckpt_path last", file=sys.stderr, flush=True)
        stop_after_this_step(trainer)

    def _periodic_save_due(self, trainer) -> bool:
        every = self.periodic_steps()
        by_steps = every >= 1 and trainer.global_step % every == 0
        by_time = False
        interval = self.time_interval_seconds()
        if interval is not None:
            now = self.clock()
            last = self.last_time_checked()
            by_time = last is not None and now - last >= interval
            by_time = trainer.strategy.broadcast(by_time)  # clocks differ across ranks: rank 0 decides
            if by_time:
                self.set_last_time_checked(now)
        return by_steps or by_time
