"""Captions as an MCAP file: one `std_msgs/String` topic per camera topic, each caption logged at its
image's header stamp, so Foxglove (or any MCAP player) shows it in time with the recording's video.

Written with Foxglove's `mcap-ros2-support` writer (ROS 2 message encoding, CDR), to a scratch file
that replaces nothing: it is moved to its name only when complete.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import OptionError
from . import require

STRING_MSGDEF = "string data"


def caption_topic(topic: str) -> str:
    """The caption topic beside a camera topic: `/front/image_raw` -> `/front/image_raw/caption`."""
    return topic.rstrip("/") + "/caption"


class CaptionMcap:
    """Write captions as they come; `close()` finishes the file and moves it into place."""

    def __init__(self, path: str | Path):
        writer = require("mcap_ros2.writer")
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"{self.path} exists; choose a new --bag-out file (captions are never "
                                  "written over another file)")
        if self.path.suffix.lower() != ".mcap":
            raise OptionError(f"--bag-out {self.path}: the captions are written as one MCAP file; name it *.mcap")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._scratch = self.path.with_name(f".{self.path.name}.{os.getpid()}.partial")
        self._file = open(self._scratch, "wb")
        self._writer = writer.Writer(self._file)
        self._schema = self._writer.register_msgdef("std_msgs/msg/String", STRING_MSGDEF)
        self.written = 0

    def write(self, topic: str, stamp_ns: int, text: str) -> None:
        """One caption of the image on `topic` stamped `stamp_ns` (log and publish time alike)."""
        self._writer.write_message(caption_topic(topic), self._schema, {"data": text}, log_time=int(stamp_ns),
                                   publish_time=int(stamp_ns), sequence=self.written)
        self.written += 1

    def close(self) -> Path:
        """Finish the MCAP (its index and summary) and give it its name."""
        if self._file.closed:
            return self.path
        self._writer.finish()
        self._file.close()
        os.replace(self._scratch, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the unfinished file (an interrupted run leaves no half-written MCAP behind)."""
        if not self._file.closed:
            self._file.close()
        self._scratch.unlink(missing_ok=True)
