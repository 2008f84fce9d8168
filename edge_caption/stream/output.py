"""Where `edge-caption stream` sends caption events: JSON lines, a window, annotated video files."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .cv import has_gui
from ..errors import SourceError
from .overlay import annotate

WINDOW = "edge-caption"


class EventSink:
    def __init__(self, *, json_lines: bool, show: bool, out: str | None, sources: int, fps: float = 15.0):
        if show and not has_gui():
            raise SourceError("--show needs an OpenCV with a GUI, and this one is headless; "
                              "pip install opencv-python (not -headless), or use JetPack's cv2, or use --out instead")
        self.json_lines, self.show, self.out, self.sources, self.fps = json_lines, show, out, sources, fps
        self._writers: dict[Any, Any] = {}
        self._order: dict[Any, int] = {}

    def emit(self, event) -> bool:
        """Send one event; False when the user asked to stop (q in the window)."""
        if self.json_lines:
            print(json.dumps({"source": event.source, "frame_index": event.frame_index, "timestamp": event.timestamp,
                              "text": event.caption.text, "score": event.caption.score,
                              "token_ids": list(event.caption.token_ids), "latency_ms": round(event.latency_ms, 2),
                              "dropped": event.dropped, "gated": event.gated, "changed": event.changed,
                              "gap_s": round(event.gap_s, 3)}), flush=True)
        else:
            print(f"[{event.source}] #{event.frame_index} {event.caption.text}  ({event.latency_ms:.0f} ms, "
                  f"{event.dropped} dropped, {event.gated} gated)", flush=True)
        if event.frame is None or not (self.show or self.out):
            return True
        drawn = annotate(event.frame, event.caption)
        if self.out:
            self._writer(event.source, drawn).write(drawn)
        if self.show:
            import cv2

            cv2.imshow(f"{WINDOW} {event.source}", drawn)
            if cv2.waitKey(1) & 0xFF == ord("q"):
                return False
        return True

    def _writer(self, source: Any, frame):
        import cv2

        if source not in self._writers:
            index = self._order.setdefault(source, len(self._order))
            path = Path(self.out)
            if self.sources > 1:
                path = path.with_name(f"{path.stem}_{index}{path.suffix}")
            h, w = frame.shape[:2]
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not writer.isOpened():
                raise SourceError(f"OpenCV cannot write {path}; use an .mp4 or .avi name in a writable directory")
            self._writers[source] = writer
        return self._writers[source]

    def close(self) -> None:
        for writer in self._writers.values():
            writer.release()
        self._writers.clear()
        if self.show:
            import cv2

            cv2.destroyAllWindows()
        sys.stdout.flush()
