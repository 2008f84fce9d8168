"""`CaptionStream`: live sources in, caption events out, with every frame accounted for.

One capture thread per source reads as fast as the source delivers and keeps only the newest frame
(a one-slot mailbox): inference never falls behind a camera, and every frame it skips is counted.
The consumer (whoever iterates) takes the newest frame of every source that may be captioned now,
captions them in one batch, and yields one `CaptionEvent` per caption.

Accounting, per source: every frame read is captioned, gated (the view had not changed), or
dropped (overwritten by a newer frame, skipped by `every_n`, corrupt or empty, or left unread at
close). `CaptionStream.stats()` gives the totals; each event carries the counts since the previous.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import FrameError, OptionError, SourceError
from ..types import CaptionEvent
from .sources import Source, open_source

log = logging.getLogger("edge_caption.stream")
_THUMB = 32


@dataclass(frozen=True)
class StreamOptions:
    every_n: int = 1                    # caption only frames whose index is a multiple of this
    max_rate: float | None = None       # captions per second per source, at most
    gate: float | None = None           # skip frames whose mean abs difference (0..1) to the last captioned is below
    emit: str = "always"                # "always" | "changed" (only when the caption text changes)
    reconnect: bool = True              # reopen a live source that fails
    max_retries: int | None = None      # reopen attempts per outage (None: forever)
    backoff: tuple[float, float] = (0.5, 10.0)   # first and longest wait between attempts, seconds
    return_attention: bool = False      # attention maps in the events' captions (families that attend)
    keep_frames: bool = False           # the captioned frame in each event (for drawing; costs memory if kept)
    # Called from the capture thread with (source uri, frame index, frame, the source's fps or None) for every
    # frame read, captioned or not: `stream --out` writes them all. It must be quick: it delays the next read.
    on_frame: Callable[[Any, int, np.ndarray, float | None], None] | None = None

    def __post_init__(self) -> None:
        problems = []
        if isinstance(self.every_n, bool) or not isinstance(self.every_n, int) or self.every_n < 1:
            problems.append(f"every_n must be an integer >= 1, got {self.every_n!r}")
        if self.max_rate is not None and not (isinstance(self.max_rate, (int, float)) and self.max_rate > 0):
            problems.append(f"max_rate must be a number > 0 (captions per second) or None, got {self.max_rate!r}")
        if self.gate is not None and not (isinstance(self.gate, (int, float)) and 0 <= self.gate <= 1):
            problems.append(f"gate must be a threshold in 0..1 or None, got {self.gate!r}")
        if self.emit not in ("always", "changed"):
            problems.append(f"emit must be 'always' or 'changed', got {self.emit!r}")
        if self.max_retries is not None and (not isinstance(self.max_retries, int) or self.max_retries < 0):
            problems.append(f"max_retries must be an integer >= 0 or None (forever), got {self.max_retries!r}")
        try:
            first, longest = (float(x) for x in self.backoff)
            if not 0 <= first <= longest:
                raise ValueError
        except (TypeError, ValueError):
            problems.append(f"backoff must be (first, longest) seconds with 0 <= first <= longest, got {self.backoff!r}")
        if self.on_frame is not None and not callable(self.on_frame):
            problems.append(f"on_frame must be a function of (source, frame_index, frame, fps), got {self.on_frame!r}")
        if problems:
            raise OptionError("invalid stream options: " + "; ".join(problems))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(cls.__dataclass_fields__)


@dataclass
class _Counts:
    read: int = 0
    captioned: int = 0
    dropped: int = 0
    gated: int = 0
    corrupt: int = 0
    suppressed: int = 0     # captioned, but not emitted (emit="changed" and the text did not change)
    reconnects: int = 0
    gap_s: float = 0.0
    since_event: dict = field(default_factory=lambda: {"dropped": 0, "gated": 0, "gap_s": 0.0})


class _Feed:
    """One source, its capture thread and its one-slot mailbox."""

    def __init__(self, source: Source, options: StreamOptions, wake: threading.Condition, stop: threading.Event,
                 opened: bool = True):
        self.source, self.options, self.wake, self.stop = source, options, wake, stop
        self.opened = opened
        self.counts = _Counts()
        self.latest: tuple[np.ndarray, int, float, float] | None = None   # frame, index, read at, timestamp
        self.finished = False
        self.error: SourceError | None = None
        self.next_allowed = 0.0
        self.last_thumb: np.ndarray | None = None
        self.last_text: str | None = None
        self.thread = threading.Thread(target=self._run, name=f"edge-caption capture {source.uri}", daemon=True)

    # ---- capture thread ------------------------------------------------------------------
    def _run(self) -> None:
        index = 0
        try:
            # a source that could not be opened yet: its outage runs from the start of the stream
            if not self.opened and not self._recover(SourceError(f"cannot open {self.source.uri!r}")):
                return
            while not self.stop.is_set():
                try:
                    frame = self.source.read()
                except EOFError:
                    return
                except SourceError as exc:
                    if not self._recover(exc):
                        return
                    continue
                now = time.time()
                stamp = self.source.stamp if self.source.stamp is not None else now
                if frame is not None and self.options.on_frame is not None:
                    self.options.on_frame(self.source.uri, index, frame, self.source.fps)
                with self.wake:
                    self.counts.read += 1
                    if frame is None:
                        self._drop(corrupt=True)
                    elif index % self.options.every_n:
                        self._drop()
                    else:
                        while self.source.backpressure and self.latest is not None and not self.stop.is_set():
                            self.wake.wait(timeout=0.1)     # a recording waits for inference to take it
                        if self.latest is not None:
                            self._drop()                # the newer frame wins
                        self.latest = (frame, index, now, stamp)
                        self.wake.notify_all()
                index += 1
        except Exception as exc:  # a source that raises something else: end it, say why
            self.error = SourceError(f"source {self.source.uri!r} failed: {type(exc).__name__}: {exc}")
            log.error("%s", self.error)
        finally:
            self.source.close()
            with self.wake:
                self.finished = True
                self.wake.notify_all()

    def _drop(self, corrupt: bool = False) -> None:
        self.counts.dropped += 1
        self.counts.since_event["dropped"] += 1
        self.counts.corrupt += corrupt

    def _recover(self, exc: SourceError) -> bool:
        """Reopen a failed live source with backoff; False when it must end."""
        self.source.close()
        if not (self.source.reopenable and self.options.reconnect):
            self.error = SourceError(f"{exc} (not reopened: reconnect=False, or not a live source)")
            log.error("%s", self.error)
            return False
        log.warning("%s; reopening", exc)
        down = time.monotonic()
        wait, longest = (float(x) for x in self.options.backoff)
        attempts = 0
        while not self.stop.wait(wait):
            attempts += 1
            try:
                self.source.open()
            except SourceError as again:
                if self.options.max_retries is not None and attempts >= self.options.max_retries:
                    self.error = SourceError(f"{again} (gave up after {attempts} attempts; raise max_retries "
                                             "or check the source)")
                    log.error("%s", self.error)
                    return False
                wait = min(longest, max(wait * 2, 0.05))
                continue
            gap = time.monotonic() - down
            with self.wake:
                self.counts.reconnects += 1
                self.counts.gap_s += gap
                self.counts.since_event["gap_s"] += gap
            log.warning("%r is back after %.1f s", self.source.uri, gap)
            return True
        return False

    # ---- consumer side (called with `wake` held) ------------------------------------------
    def take(self, now: float) -> tuple[np.ndarray, int, float, float] | None:
        if self.latest is None or now < self.next_allowed:
            return None
        item, self.latest = self.latest, None
        self.wake.notify_all()          # a source under back-pressure waits for the mailbox to empty
        return item

    @property
    def done(self) -> bool:
        return self.finished and self.latest is None


class CaptionStream:
    """An iterator of `CaptionEvent`s over one or several sources; close() from any thread."""

    def __init__(self, captioner, sources: Sequence[Any], options: StreamOptions):
        self._captioner = captioner
        self.options = options
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._closed = False
        self._feeds: list[_Feed] = []
        try:
            for i, spec in enumerate(sources):
                source = open_source(spec, i)
                opened = self._open_first(source)
                self._feeds.append(_Feed(source, options, self._wake, self._stop, opened))
        except BaseException:
            for feed in self._feeds:
                feed.source.close()
            raise
        for feed in self._feeds:
            feed.thread.start()
        self._pending: list[CaptionEvent] = []

    def _open_first(self, source: Source) -> bool:
        """Open now, so that a wrong source fails here; a live one that is down is retried in its thread."""
        try:
            source.open()
            return True
        except SourceError:
            if not (source.reopenable and self.options.reconnect and self.options.max_retries != 0):
                raise
            log.warning("cannot open %r yet; retrying in the background", source.uri)
            return False

    # ---- iteration -----------------------------------------------------------------------
    def __iter__(self) -> "CaptionStream":
        return self

    def __next__(self) -> CaptionEvent:
        while not self._pending:
            if self._closed:
                self._join()        # closed from another thread: the iteration ends with the threads gone
                raise StopIteration
            batch = self._collect()
            if batch is None:
                self.close()
                errors = [f.error for f in self._feeds if f.error is not None]
                if errors:
                    raise SourceError("; ".join(str(e) for e in errors))
                raise StopIteration
            if batch:
                self._caption(batch)
        return self._pending.pop(0)

    def _collect(self) -> list[tuple[_Feed, np.ndarray, int, float, float]] | None:
        """The frames to caption now ([] after a timeout), or None when every source has ended."""
        with self._wake:
            while True:
                if self._stop.is_set():
                    return []
                now = time.monotonic()
                batch = []
                for feed in self._feeds:
                    item = feed.take(now)
                    if item is None:
                        continue
                    if self._gated(feed, item[0]):
                        feed.counts.gated += 1
                        feed.counts.since_event["gated"] += 1
                        continue
                    batch.append((feed, *item))
                if batch:
                    return batch
                if all(feed.done for feed in self._feeds):
                    return None
                soonest = min((f.next_allowed for f in self._feeds if f.latest is not None), default=now + 0.1)
                self._wake.wait(timeout=min(0.1, max(0.001, soonest - now)))

    def _gated(self, feed: _Feed, frame: np.ndarray) -> bool:
        if self.options.gate is None:
            return False
        import cv2

        gray = frame if frame.ndim == 2 else cv2.cvtColor(frame[..., :3], cv2.COLOR_BGR2GRAY)
        thumb = cv2.resize(gray, (_THUMB, _THUMB), interpolation=cv2.INTER_AREA).astype(np.float32)
        if feed.last_thumb is not None and float(np.abs(thumb - feed.last_thumb).mean()) / 255 < self.options.gate:
            return True
        feed.last_thumb = thumb
        return False

    def _caption(self, batch: list[tuple[_Feed, np.ndarray, int, float, float]]) -> None:
        frames = [frame for _, frame, _, _, _ in batch]
        attention = self.options.return_attention
        try:
            captions = self._captioner.caption_batch(frames, return_attention=attention)
        except FrameError:      # one odd frame must not cost the others their caption
            captions = []
            for frame in frames:
                try:
                    captions.extend(self._captioner.caption_batch([frame], return_attention=attention))
                except FrameError:
                    captions.append(None)
        done = time.time()
        with self._wake:
            for (feed, frame, index, read_at, stamp), caption in zip(batch, captions):
                if caption is None:
                    feed._drop(corrupt=True)
                    continue
                feed.counts.captioned += 1
                if self.options.max_rate:
                    feed.next_allowed = time.monotonic() + 1.0 / self.options.max_rate
                changed = caption.text != feed.last_text
                feed.last_text = caption.text
                if self.options.emit == "changed" and not changed:
                    feed.counts.suppressed += 1
                    continue
                since = feed.counts.since_event
                self._pending.append(CaptionEvent(
                    source=feed.source.uri, frame_index=index, timestamp=stamp, caption=caption,
                    latency_ms=(done - read_at) * 1e3, dropped=since["dropped"], gated=since["gated"],
                    changed=changed, gap_s=since["gap_s"], frame=frame if self.options.keep_frames else None))
                feed.counts.since_event = {"dropped": 0, "gated": 0, "gap_s": 0.0}

    # ---- accounting and lifetime ---------------------------------------------------------
    def stats(self) -> list[dict[str, Any]]:
        """Per source: frames read, captioned, dropped, gated, corrupt, suppressed, reconnects, gap_s."""
        with self._wake:
            return [{"source": f.source.uri, "read": f.counts.read, "captioned": f.counts.captioned,
                     "dropped": f.counts.dropped, "gated": f.counts.gated, "corrupt": f.counts.corrupt,
                     "suppressed": f.counts.suppressed, "reconnects": f.counts.reconnects,
                     "gap_s": f.counts.gap_s, "waiting": int(f.latest is not None),
                     "error": None if f.error is None else str(f.error)} for f in self._feeds]

    def close(self) -> None:
        """Stop every capture thread and wait for it (any thread may call this; it is idempotent)."""
        with self._wake:
            if self._closed:
                return
            self._closed = True
            self._stop.set()
            self._wake.notify_all()
        self._join()
        with self._wake:
            for feed in self._feeds:      # a frame still in the mailbox was read but never captioned
                if feed.latest is not None:
                    feed.latest = None
                    feed._drop()

    def _join(self) -> None:
        for feed in self._feeds:
            if feed.thread is not threading.current_thread() and feed.thread.is_alive():
                feed.thread.join(timeout=5.0)
                if feed.thread.is_alive():
                    log.warning("capture thread of %r is blocked in its source; it exits when the read returns",
                                feed.source.uri)

    def __enter__(self) -> "CaptionStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def split_sources(source: Any) -> list[Any]:
    """A list or tuple of sources is several sources; a list of arrays (frames) is one source."""
    if isinstance(source, (list, tuple)) and source and not any(isinstance(s, np.ndarray) for s in source):
        return list(source)
    return [source]
