"""ROS bags (ROS 1 .bag, ROS 2 sqlite3 or MCAP) read as a stream of frames, one message at a time.

    with open_bag("drive.mcap", topics=["/front/image_raw"]) as bag:
        for item in bag.frames(fps=1.0):          # BagFrame: topic, times, frame or error
            ...

rosbags' AnyReader reads the chunks lazily, and each frame is converted and handed on before the next
message is read, so memory does not grow with the bag. `fps` samples each topic in message time (the
recording's receive time), as `video_frames` samples a video: the first message, then the first one
at or after each 1/fps s. Messages skipped that way are never deserialized.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..errors import EdgeCaptionError, OptionError, SourceError
from . import require
from .convert import message_to_frame, stamp_ns

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
BAG_SUFFIXES = (".bag", ".mcap", ".db3")


def is_bag(path: str | Path) -> bool:
    """A ROS 1 .bag, a ROS 2 storage file (.mcap, .db3), or a ROS 2 bag directory (metadata.yaml)."""
    path = Path(path)
    return path.suffix.lower() in BAG_SUFFIXES or (path.is_dir() and (path / "metadata.yaml").is_file())


@dataclass(frozen=True)
class BagFrame:
    """One image message: its frame, or why it has none (`error`)."""

    bag: str
    topic: str
    log_time_ns: int            # when the recorder received it
    frame_time: float           # seconds from the bag's first message (log time)
    stamp_ns: int | None        # the image header's stamp; None when the message could not be read
    frame: np.ndarray | None    # BGR uint8 [H,W,3]
    error: str | None


class Bag:
    """An open bag and the image topics chosen from it. Use as a context manager (see `open_bag`)."""

    def __init__(self, path: str | Path, topics: Sequence[str] = ()):
        highlevel = require("rosbags.highlevel")
        typesys = require("rosbags.typesys")
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"no bag at {self.path}: pass a ROS 1 .bag, a ROS 2 bag directory, or a "
                                    ".mcap / .db3 file")
        # Bags without message definitions (old ROS 2 sqlite3) are read with the newest ROS 2 types.
        default = typesys.get_typestore(typesys.Stores.LATEST)
        try:
            self._reader = highlevel.AnyReader([self.path], default_typestore=default)
            self._reader.open()
        except EdgeCaptionError:
            raise
        except Exception as exc:
            raise SourceError(f"cannot read {self.path} as a ROS bag ({type(exc).__name__}: {exc}); "
                              "ROS 1 .bag, ROS 2 directories and .mcap / .db3 files are read") from None
        try:
            self.topics = self._choose(list(topics))
        except BaseException:
            self._reader.close()
            raise
        self._connections = [c for c in self._reader.connections if c.topic in self.topics]
        self.start_ns = self._reader.start_time if self._reader.message_count else 0
        self.duration_ns = self._reader.duration if self._reader.message_count else 0
        self.message_count = sum(c.msgcount for c in self._connections)

    def _choose(self, wanted: list[str]) -> dict[str, str]:
        """topic -> message type, for the image topics asked for (all of them when none are named)."""
        found = {name: info.msgtype for name, info in self._reader.topics.items()}
        images = {name: kind for name, kind in found.items() if kind in IMAGE_TYPES}
        if not wanted:
            if not images:
                raise SourceError(f"{self.path} has no sensor_msgs/Image or CompressedImage topic (its topics: "
                                  f"{', '.join(f'{n} [{k}]' for n, k in sorted(found.items())) or 'none'})")
            return dict(sorted(images.items()))
        chosen = {}
        for name in wanted:
            if name not in found:
                raise SourceError(f"{self.path} has no topic {name!r}; its image topics: "
                                  f"{', '.join(sorted(images)) or 'none'}")
            if name not in images:
                raise SourceError(f"topic {name!r} in {self.path} carries {found[name]}, not sensor_msgs/Image or "
                                  f"CompressedImage; its image topics: {', '.join(sorted(images)) or 'none'}")
            chosen[name] = images[name]
        return chosen

    def frames(self, fps: float | None = None, on_message: Callable[[], None] | None = None) -> Iterator[BagFrame]:
        """The chosen topics' messages in log-time order, one `BagFrame` each (fps=None or 0: every one).

        `on_message` is called once per message read, sampled or not (a progress bar's tick)."""
        if fps is not None and fps < 0:
            raise OptionError(f"fps must be >= 0 (0: every message), got {fps}")
        step = 1.0 / fps if fps else None
        due: dict[str, float] = {}
        bag = str(self.path)
        for connection, log_ns, raw in self._reader.messages(connections=self._connections):
            if on_message is not None:
                on_message()
            t = (log_ns - self.start_ns) / 1e9
            if step is not None:
                next_due = due.get(connection.topic, 0.0)
                if t + 1e-9 < next_due:
                    continue
                due[connection.topic] = next_due + step * max(1, int((t + 1e-9 - next_due) // step) + 1)
            yield self._frame(bag, connection, log_ns, round(t, 9), raw)

    def _frame(self, bag: str, connection: Any, log_ns: int, t: float, raw: Any) -> BagFrame:
        try:
            msg = self._reader.deserialize(raw, connection.msgtype)
        except Exception as exc:        # rosbags raises several kinds for bytes that are not the message
            return BagFrame(bag, connection.topic, log_ns, t, None, None,
                            f"message at {log_ns} ns on {connection.topic} could not be deserialized as "
                            f"{connection.msgtype} ({type(exc).__name__}: {exc}): a corrupt message")
        try:
            stamp = stamp_ns(msg)
        except (AttributeError, TypeError, ValueError):
            stamp = None
        try:
            return BagFrame(bag, connection.topic, log_ns, t, stamp, message_to_frame(msg), None)
        except EdgeCaptionError as exc:
            return BagFrame(bag, connection.topic, log_ns, t, stamp, None, str(exc))

    def close(self) -> None:
        if self._reader.stack is not None:
            self._reader.close()

    def __enter__(self) -> "Bag":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_bag(path: str | Path, topics: Sequence[str] = ()) -> Bag:
    """Open a bag and choose its image topics (all of them when `topics` is empty).

    Raises FileNotFoundError for a missing path and SourceError for a file that is not a bag, a topic
    it lacks, or a topic that carries something other than images."""
    return Bag(path, topics)
