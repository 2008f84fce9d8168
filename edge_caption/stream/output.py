"""Where `edge-caption stream` sends caption events: JSON lines, a window, annotated video files.

The video gets every frame the source delivered, at the source's rate, each drawn with the newest
caption of its source: captions come slower than frames (and gating or `every_n` skip frames on
purpose), so writing only captioned frames would shorten the video. Frames arrive through
`on_frame`, from the capture threads; captions through `emit`, from the thread that iterates.
"""
from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any, Sequence

from .cv import has_gui
from ..errors import SourceError
from .overlay import annotate, draw_text

WINDOW = "edge-caption"
WAITING = "(waiting for the first caption)"


class EventSink:
    def __init__(self, *, json_lines: bool, show: bool, out: str | None, sources: Sequence[Any], fps: float = 15.0):
        """`sources`: the sources as given (they name the files NAME_i.mp4 when several); `fps`: the video's
        rate when a source does not say its own."""
        if show and not has_gui():
            raise SourceError("--show needs an OpenCV with a GUI, and this one is headless; "
                              "pip install opencv-python (not -headless), or use JetPack's cv2, or use --out instead")
        self.json_lines, self.show, self.out, self.fps = json_lines, show, out, fps
        self._order = {str(source): i for i, source in enumerate(sources)}
        self._several = len(sources) > 1
        self._writers: dict[Any, Any] = {}
        self._latest: dict[Any, Any] = {}       # source -> its newest caption
        self._lock = threading.Lock()           # writers are made, written and released from several threads
        self._closed = False

    def emit(self, event) -> bool:
        """Send one event; False when the user asked to stop (q in the window)."""
        self._latest[event.source] = event.caption
        if self.json_lines:
            print(json.dumps({"source": event.source, "frame_index": event.frame_index, "timestamp": event.timestamp,
                              "text": event.caption.text, "score": event.caption.score,
                              "token_ids": list(event.caption.token_ids), "latency_ms": round(event.latency_ms, 2),
                              "dropped": event.dropped, "gated": event.gated, "changed": event.changed,
                              "gap_s": round(event.gap_s, 3)}), flush=True)
        else:
            print(f"[{event.source}] #{event.frame_index} {event.caption.text}  ({event.latency_ms:.0f} ms, "
                  f"{event.dropped} dropped, {event.gated} gated)", flush=True)
        if event.frame is None or not self.show:
            return True
        import cv2

        cv2.imshow(f"{WINDOW} {event.source}", annotate(event.frame, event.caption))
        return not (cv2.waitKey(1) & 0xFF == ord("q"))

    def on_frame(self, source: Any, index: int, frame, fps: float | None) -> None:
        """Write one frame read from `source` with its newest caption (the stream's `on_frame` option)."""
        if not self.out:
            return
        caption = self._latest.get(source)
        drawn = annotate(frame, caption) if caption is not None else draw_text(frame, [(WAITING, (190, 190, 190))])
        with self._lock:
            if not self._closed:
                self._writer(source, drawn, fps).write(drawn)

    def _writer(self, source: Any, frame, fps: float | None):
        import cv2

        if source not in self._writers:
            path = Path(self.out)
            if self._several:
                index = self._order.setdefault(str(source), len(self._order))
                path = path.with_name(f"{path.stem}_{index}{path.suffix}")
            h, w = frame.shape[:2]
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps or self.fps, (w, h))
            if not writer.isOpened():
                raise SourceError(f"OpenCV cannot write {path}; use an .mp4 or .avi name in a writable directory")
            self._writers[source] = writer
        return self._writers[source]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for writer in self._writers.values():
                writer.release()
            self._writers.clear()
        if self.show:
            import cv2

            cv2.destroyAllWindows()
        sys.stdout.flush()
