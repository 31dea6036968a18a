"""Files and folders lit_llm writes get the modes the user's umask asks for (tempfile's private 0600/0700
are for temporary names only, not for what ends up renamed into place)."""

from __future__ import annotations

import os
from pathlib import Path


def current_umask() -> int:
    """This process's umask, read from /proc on Linux (no change of process state), else set and restored."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(path: str | Path) -> None:
    """Give path (and, for a folder, everything in it) the default modes: 0777 or 0666 less the umask."""
    mask = current_umask()
    path = Path(path)
    paths = [path, *path.rglob("*")] if path.is_dir() else [path]
    for p in paths:
        if not p.is_symlink():
            os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)
