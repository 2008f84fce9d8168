"""ROS sources for the stream: a recorded bag replayed (`rosbag:///path/drive.mcap?topic=/cam/image_raw`),
and a topic whose messages a subscriber pushes in (what the ROS 2 node uses).

Both convert messages with `edge_caption.ros.convert`, as `batch` does, and give each frame's header
stamp to the stream, which puts it in the events' `timestamp`.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

from ..errors import EdgeCaptionError, SourceError
from .base import Source


def parse_rosbag_uri(uri: str) -> tuple[str, list[str], float | None]:
    """`rosbag:///abs/path?topic=/a&topic=/b&rate=1` (or `rosbag://relative/path?...`) -> (path, topics, rate)."""
    parts = urlsplit(uri)
    path = parts.netloc + parts.path
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"topic", "rate"})
    problems = []
    if not path:
        problems.append("no bag path")
    if unknown:
        problems.append(f"unknown parameter(s) {', '.join(unknown)}")
    rate = None
    if "rate" in query:
        try:
            rate = float(query["rate"][-1])
            if not rate > 0:
                raise ValueError
        except ValueError:
            problems.append(f"rate must be a number > 0 (1: recorded speed), got {query['rate'][-1]!r}")
    if problems:
        raise SourceError(f"{uri!r}: {'; '.join(problems)}; write rosbag:///path/to/bag?topic=/cam/image_raw"
                          "[&topic=...][&rate=1]")
    return path, [t for t in query.get("topic", []) if t], rate


class RosbagSource(Source):
    """A bag's image topics replayed in message order. With `rate` (1: recorded speed) it paces like a
    camera and the stream's latest-frame policy drops what inference cannot keep up with; without, it
    goes as fast as the captioner takes frames and waits for it (back-pressure: nothing is dropped)."""

    live = False

    def __init__(self, uri: str):
        self.uri = uri
        self.path, self.topics, self.rate = parse_rosbag_uri(uri)
        self.backpressure = self.rate is None
        self._bag = None
        self._frames = None
        self._first_ns: int | None = None
        self._started = 0.0

    def open(self) -> None:
        from ..ros.bag import open_bag

        self.close()
        try:
            self._bag = open_bag(self.path, self.topics)
        except FileNotFoundError as exc:
            raise SourceError(f"{self.uri!r}: {exc}") from None
        seconds = self._bag.duration_ns / 1e9 if self._bag.message_count > 1 else 0.0
        self.fps = (self._bag.message_count - 1) / seconds if seconds > 0 else None
        self._frames = self._bag.frames(None)
        self._first_ns = None

    def read(self) -> np.ndarray | None:
        if self._frames is None:
            raise SourceError(f"{self.uri!r} is not open")
        try:
            item = next(self._frames)
        except StopIteration:
            raise EOFError from None
        if self._first_ns is None:
            self._first_ns, self._started = item.log_time_ns, time.monotonic()
        if self.rate:            # recorded speed x rate: wait for the message's moment
            delay = self._started + (item.log_time_ns - self._first_ns) / 1e9 / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        self.stamp = (item.stamp_ns if item.stamp_ns is not None else item.log_time_ns) / 1e9
        return item.frame       # None for a corrupt message: counted as dropped (corrupt)

    def close(self) -> None:
        if self._bag is not None:
            self._bag.close()
            self._bag = None
            self._frames = None


class TopicSource(Source):
    """Messages pushed by a subscriber callback (`put`), read by the stream's capture thread.

    A live topic: the stream's latest-frame policy decides what is captioned; `put` never blocks the
    subscriber. `finish()` ends the stream (the node's shutdown)."""

    live = False            # nothing to reopen: the subscription outlives any gap in the messages

    def __init__(self, name: str = "ros2"):
        self.uri = name
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._done = threading.Event()

    def put(self, msg: Any) -> None:
        """Hand one sensor_msgs/Image or CompressedImage to the stream (from any thread)."""
        self._queue.put(msg)

    def finish(self) -> None:
        self._done.set()
        self._queue.put(None)

    def open(self) -> None:
        pass

    def read(self) -> np.ndarray | None:
        from ..ros.convert import message_to_frame, stamp_ns

        while True:
            try:
                msg = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self._done.is_set():
                    raise EOFError from None
                continue
            if msg is None:
                raise EOFError
            try:
                self.stamp = stamp_ns(msg) / 1e9
            except (AttributeError, TypeError, ValueError):
                self.stamp = time.time()
            try:
                return message_to_frame(msg)
            except EdgeCaptionError:
                return None         # counted as a corrupt frame; the next message goes on
