"""Frame sources behind one small interface: open, read, close, and whether to reopen on failure.

`open_source(spec)` accepts a camera index, a video file, an RTSP/HTTP URL, `csi://N` (a Jetson CSI
camera through GStreamer's `nvarguscamerasrc`), a GStreamer pipeline string ending in `appsink`, a ROS
bag `rosbag:///path?topic=...[&rate=1]` (stream/ros.py), or any iterable of frames. Sources are read by the stream's capture threads, one thread per source.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from .base import Source
from .cv import gstreamer_available
from ..errors import SourceError

# A Jetson CSI camera: NVMM buffers converted to BGR for appsink; drop=true keeps only the newest.
CSI_PIPELINE = ("nvarguscamerasrc sensor-id={sensor} ! video/x-raw(memory:NVMM), width={width}, height={height}, "
                "framerate={fps}/1 ! nvvidconv ! video/x-raw, format=BGRx ! videoconvert ! video/x-raw, format=BGR ! "
                "appsink drop=true max-buffers=1 sync=false")


class CaptureSource(Source):
    """Everything OpenCV's VideoCapture opens: camera indices, files, URLs, GStreamer pipelines."""

    def __init__(self, uri: Any, *, backend: int | None = None, live: bool = True, pace_fps: bool = False):
        self.uri = uri
        self.live = live
        self._backend = backend
        self._pace = pace_fps
        self._capture = None
        self._interval = 0.0
        self._next_at = 0.0

    def open(self) -> None:
        import cv2

        target = self.uri
        capture = cv2.VideoCapture(target) if self._backend is None else cv2.VideoCapture(target, self._backend)
        if not capture.isOpened():
            capture.release()
            raise SourceError(f"cannot open {self.uri!r}: {_hint(self.uri)}")
        self._capture = capture
        fps = capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and 0 < fps < 1000 else None
        self._interval = 1.0 / self.fps if self._pace and self.fps else 0.0
        self._next_at = time.monotonic()

    def read(self) -> np.ndarray | None:
        if self._capture is None:
            raise SourceError(f"{self.uri!r} is not open")
        if self._interval:          # a file replayed like a camera: frames come at the file's rate
            delay = self._next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._next_at = max(self._next_at + self._interval, time.monotonic() - self._interval)
        ok, frame = self._capture.read()
        if not ok:
            if self.live:
                raise SourceError(f"{self.uri!r} stopped delivering frames")
            raise EOFError
        return frame if _valid(frame) else None

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


class IterableSource(Source):
    """Any iterable of frames (arrays, or None for a frame that could not be read). Not reopenable."""

    live = False

    def __init__(self, frames: Iterable[Any], uri: Any = None):
        self.uri = uri
        self._frames = frames
        self._iterator: Iterator[Any] | None = None

    def open(self) -> None:
        if self._iterator is None:
            self._iterator = iter(self._frames)

    def read(self) -> np.ndarray | None:
        try:
            frame = next(self._iterator)
        except StopIteration:
            raise EOFError from None
        return frame if _valid(frame) else None


def _valid(frame: Any) -> bool:
    return (isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim in (2, 3)
            and frame.size > 0 and (frame.ndim == 2 or frame.shape[2] in (1, 3, 4)))


def _require_gstreamer(what: str) -> int:
    import cv2

    if not gstreamer_available():
        raise SourceError(
            f"{what} needs an OpenCV built with GStreamer, and this cv2 ({cv2.__version__}, {cv2.__file__}) is not "
            "(pip's opencv-python wheels never are). On a Jetson use JetPack's: pip uninstall opencv-python "
            "opencv-python-headless && sudo apt install python3-opencv; `edge-caption doctor` shows which cv2 is used")
    return cv2.CAP_GSTREAMER


def open_source(spec: Any, index: int = 0, *, csi_size: tuple[int, int] = (1280, 720), csi_fps: int = 30) -> Source:
    """Make the source `spec` names (see the module docstring). Nothing is opened yet."""
    if isinstance(spec, Source):
        return spec
    if isinstance(spec, bool):
        raise SourceError(f"{spec!r} is not a source; pass a camera index, a path, a URL or an iterable of frames")
    if isinstance(spec, int):
        return CaptureSource(spec)
    if isinstance(spec, Path):
        spec = str(spec)
    if isinstance(spec, str):
        if spec.startswith("rosbag://"):
            from .ros import RosbagSource

            return RosbagSource(spec)
        if spec.isdigit():
            return CaptureSource(int(spec))
        if spec.startswith("csi://"):
            sensor = spec[len("csi://"):]
            if not sensor.isdigit():
                raise SourceError(f"{spec!r}: write csi://N with the sensor number, e.g. csi://0")
            pipeline = CSI_PIPELINE.format(sensor=sensor, width=csi_size[0], height=csi_size[1], fps=csi_fps)
            source = CaptureSource(pipeline, backend=_require_gstreamer(spec))
            source.uri = spec
            return source
        if "appsink" in spec and "!" in spec:
            return CaptureSource(spec, backend=_require_gstreamer("a GStreamer pipeline"))
        if "://" in spec:
            return CaptureSource(spec)       # rtsp://, http(s)://: live, reopened on failure
        if not Path(spec).is_file():
            raise SourceError(f"no video file at {spec}: pass an existing file, a camera index, csi://N, "
                              "an rtsp:// or http:// URL, or a GStreamer pipeline ending in appsink")
        return CaptureSource(spec, live=False, pace_fps=True)
    if isinstance(spec, np.ndarray):
        raise SourceError("one array is a frame, not a source; use caption() for it, or pass a list of frames")
    if hasattr(spec, "__iter__"):
        return IterableSource(spec, uri=index)
    raise SourceError(f"{type(spec).__name__} is not a source; pass a camera index, a path, a URL, csi://N, "
                      "a GStreamer pipeline or an iterable of frames")


def _hint(uri: Any) -> str:
    if isinstance(uri, int):
        return "no camera at that index (check `ls /dev/video*`, or that no other program holds it)"
    text = str(uri)
    if text.startswith(("rtsp://", "http://", "https://")):
        return "check the URL, the network and the camera's credentials"
    if "!" in text:
        return "GStreamer could not start the pipeline; try it with gst-launch-1.0 first"
    return "OpenCV cannot decode it (a video file OpenCV's FFmpeg reads: mp4, avi, mkv, ...)"
