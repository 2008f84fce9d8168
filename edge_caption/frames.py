"""Files to caption offline: which paths are images or videos, and a video's frames at a given rate.

Used by `edge_caption.ray` (and by anything that must caption the same frames the same way, such as
a serial reference loop): both read a video through `video_frames`, so both see identical pixels.
"""
from __future__ import annotations

import glob
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .errors import SourceError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".h264", ".h265"}


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def expand_inputs(items: str | Path | Sequence[str | Path], kinds: str = "images and videos") -> list[str]:
    """Paths, globs and directories -> the files to caption, in order.

    `kinds`: "images and videos", or "images" (the `caption` command). A directory gives its files
    of those kinds (by suffix, not recursing); a glob its matches; a file is taken as it is, whatever
    its suffix (an unreadable one becomes a row with an error, or the captioner's error)."""
    suffixes = IMAGE_SUFFIXES if kinds == "images" else IMAGE_SUFFIXES | VIDEO_SUFFIXES
    if isinstance(items, (str, Path)):
        items = [items]
    found: list[str] = []
    for item in items:
        text = str(item)
        path = Path(text)
        if path.is_dir():
            found.extend(str(p) for p in sorted(path.iterdir()) if p.is_file() and p.suffix.lower() in suffixes)
        elif any(ch in text for ch in "*?["):
            matches = sorted(p for p in glob.glob(text, recursive=True) if Path(p).is_file())
            if not matches:
                raise FileNotFoundError(f"no file matches {text!r}")
            found.extend(matches)
        elif path.is_file():
            found.append(text)
        else:
            raise FileNotFoundError(f"no {kinds} at {text}: pass files, globs or directories of {kinds}")
    if not found:
        raise FileNotFoundError(f"nothing to caption: the inputs hold no {kinds}")
    return found


def video_frames(path: str | Path, fps: float | None = 1.0) -> Iterator[tuple[float, np.ndarray]]:
    """(time in seconds, BGR frame) for one frame every 1/fps seconds of video (every frame with
    fps=None). Times come from the frame index and the file's frame rate, so they are exact and the
    same on every machine."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise SourceError(f"cannot open {path} as a video (missing, corrupt, or a codec this OpenCV lacks)")
    try:
        native = capture.get(cv2.CAP_PROP_FPS)
        if not native or native != native or native <= 0:
            native = 30.0               # containers without a rate: assume a camera's
        step = None if not fps else 1.0 / fps
        due, index = 0.0, 0
        while capture.grab():
            t = index / native
            index += 1
            if step is not None and t + 1e-9 < due:
                continue
            ok, frame = capture.retrieve()
            if not ok or frame is None:
                continue
            if step is not None:
                due += step * max(1, int((t + 1e-9 - due) // step) + 1)
            yield round(t, 6), frame
    finally:
        capture.release()
