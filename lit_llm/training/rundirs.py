"""A run that fails before it logged a training step or saved a checkpoint leaves no folders behind: the log version it claimed,
the W&B run directories it started and the folders it created on the way are removed again. A run that
trained (metrics.csv has rows) or continues an earlier version keeps everything."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

RUN: dict = {}  # this process's fit: its root, the paths there before it, the version it claimed, ...

WATCHED = ("", "lightning_logs", "wandb", "checkpoints")  # under the root


def start_run(root: str, checkpoint_dir: str | None = None) -> None:
    """Note what exists under root before the run writes anything."""
    base = Path(root)
    existed = {base / sub for sub in WATCHED if (base / sub).exists()}
    if (base / "wandb").is_dir():
        existed |= set((base / "wandb").iterdir())
    RUN.clear()
    RUN.update(root=base, existed=existed, parents=[p for p in base.absolute().parents if not p.exists()],
               checkpoints=Path(checkpoint_dir) if checkpoint_dir else base / "checkpoints", started=time.time())


def claimed_version(version_dir: Path) -> None:
    RUN["version_dir"] = Path(version_dir)


def trained(version_dir: Path, checkpoints: Path, started: float) -> bool:
    """Whether the run logged a training step or saved a checkpoint."""
    try:
        if any(p.stat().st_mtime >= started for p in checkpoints.glob("*.ckpt")):
            return True
    except OSError:
        pass
    metrics = version_dir / "metrics.csv"
    try:
        with open(metrics) as f:
            return sum(1 for _ in f) > 1  # rows beyond the header
    except OSError:
        return False


def end_run(failed: bool) -> None:
    """After a command: if it was a fit that failed before it logged a training step or saved a checkpoint,
    remove what it created; either way, forget the run."""
    if not failed or "root" not in RUN:
        RUN.clear()
        return
    root, existed, parents, version_dir = RUN["root"], RUN["existed"], RUN["parents"], RUN.get("version_dir")
    checkpoints, started = RUN["checkpoints"], RUN["started"]
    RUN.clear()
    if version_dir is None or trained(version_dir, checkpoints, started):
        return
    shutil.rmtree(version_dir, ignore_errors=True)
    wandb = root / "wandb"
    if wandb.is_dir():
        for path in wandb.iterdir():
            if path not in existed and path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
        if wandb not in existed:  # only W&B's own debug logs and its latest-run link are left
            shutil.rmtree(wandb, ignore_errors=True)
    for path in [root / "checkpoints", root / "lightning_logs", root, *parents]:
        if path not in existed:
            try:
                path.rmdir()  # only when empty
            except OSError:
                pass
