"""A progress bar for prepare (rich, on a terminal only) that is silent elsewhere."""

from __future__ import annotations

import sys


class Progress:
    def __init__(self, label: str, log=print, total: int | None = None) -> None:
        self.label, self.total, self.bar, self.task = label, total, None, None
        self.enabled = log is print and sys.stderr.isatty()

    def __enter__(self) -> Progress:
        if self.enabled:
            from rich.progress import Progress as RichProgress

            self.bar = RichProgress(transient=True)
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=self.total)
        return self

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.advance(self.task, n)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()
