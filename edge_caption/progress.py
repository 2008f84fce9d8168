"""Progress of long commands on stderr: a dependency-free bar (the runtime does not require tqdm) and the
message sink that export, quantize, calibrate, build and train report through."""
from __future__ import annotations

import sys
import time
from typing import Callable


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


def reporter(progress: bool | Callable[[str], None], command: str) -> Callable[[str], None]:
    """Messages of a long command: to `progress` if callable, above any tqdm bar, or nowhere."""
    if callable(progress):
        return progress
    if not progress:
        return lambda message: None
    try:
        from tqdm import tqdm
        return lambda message: tqdm.write(f"[edge-caption {command}] {message}")
    except ImportError:
        return lambda message: print(f"[edge-caption {command}] {message}", flush=True)
