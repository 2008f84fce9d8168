"""What the OpenCV in use can do, read from its build information (pip's wheels lack GStreamer;
the -headless ones lack windows; JetPack's has both)."""
from __future__ import annotations


def _build_value(key: str) -> str:
    import cv2

    for line in cv2.getBuildInformation().splitlines():
        name, _, value = line.strip().partition(":")
        if name.strip() == key:
            return value.strip()
    return ""


def gstreamer_available() -> bool:
    return _build_value("GStreamer").upper().startswith("YES")


def has_gui() -> bool:
    """Whether cv2.imshow can open a window (a GUI backend such as GTK, QT or Cocoa is built in)."""
    return _build_value("GUI").upper() not in ("", "NONE")
