"""The one interface every frame source implements (sources.py makes them from URIs)."""
from __future__ import annotations

from typing import Any

import numpy as np


class Source:
    """One frame source. `read()` returns a frame, None for a corrupt/empty one, or raises EOFError
    at the end (a file) and SourceError on failure (a camera that dropped out)."""

    uri: Any = None
    live: bool = True       # a live source is reopened after a failure; a file or iterable just ends
    fps: float | None = None    # the rate the source says it delivers, once open (None: unknown)
    # A recording's own time (s since the epoch) of the frame just read: the event's timestamp (None: now).
    stamp: float | None = None
    # The stream waits for the consumer to take each frame instead of dropping it (a bag replayed as fast
    # as inference allows); False: the latest-frame policy, as for a camera.
    backpressure: bool = False

    def open(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def read(self) -> np.ndarray | None:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        pass

    @property
    def reopenable(self) -> bool:
        return self.live
