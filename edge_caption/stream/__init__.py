"""Streaming: sources (cameras, files, RTSP/HTTP, Jetson CSI, GStreamer, iterables) into caption events."""
from __future__ import annotations

from .runner import CaptionStream, StreamOptions, split_sources
from .sources import CaptureSource, IterableSource, Source, gstreamer_available, open_source

__all__ = ["CaptionStream", "StreamOptions", "Source", "CaptureSource", "IterableSource", "open_source",
           "gstreamer_available", "split_sources"]
