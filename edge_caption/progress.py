"""A dependency-free progress bar on stderr: the runtime does not require tqdm."""
from __future__ import annotations

import sys
import time


class Progress:
    """Redrawn in place on a terminal; elsewhere (logs, pipes) one line when done."""

    def __init__(self, total: int, label: str, enabled: bool = True):
        self.total, self.label, self.done = total, label, 0
        self.enabled = enabled
        self.started = self.shown = time.perf_counter()
        self.tty = sys.stderr.isatty()

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        finished = self.done >= self.total
        if self.enabled and (finished or (self.tty and now - self.shown > 0.5)):
            self.shown = now
            rate = self.done / max(now - self.started, 1e-9)
            filled = int(30 * self.done / max(1, self.total))
            start = "\r" if self.tty else ""
            sys.stderr.write(f"{start}{self.label} [{'#' * filled}{'.' * (30 - filled)}] "
                             f"{self.done}/{self.total} {rate:.1f}/s")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()
