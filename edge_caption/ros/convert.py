"""ROS image messages -> OpenCV frames (`uint8 [H,W,3]` BGR), with numpy and cv2 only.

Works on any object with the message's fields (rosbags' deserialized messages, rclpy's, mcap_ros2's),
so the bag reader, the stream source and the ROS 2 node share it and none needs ROS installed.

- `sensor_msgs/Image`: 8-bit `rgb8 bgr8 rgba8 bgra8 mono8` (and `8UC1 8UC3 8UC4`, read as mono, BGR,
  BGRA), 16-bit `mono16 rgb16 bgr16 rgba16 bgra16`, YUV 4:2:2 `yuv422`/`uyvy` (ROS's yuv422 is UYVY
  byte order) and `yuv422_yuy2`/`yuyv`, and Bayer `bayer_{rggb,bggr,gbrg,grbg}{8,16}`. Rows may be
  padded (`step` > width x pixel size); `is_bigendian` says the byte order of 16-bit samples.
- 16-bit samples are scaled linearly from the full 16-bit range to 8 bits, v8 = round(v16 x 255 /
  65535), as cv_bridge's mono16 -> mono8 conversion does: 65535 is white. A 10- or 12-bit camera
  that publishes mono16 without shifting its samples up therefore looks dark.
- Bayer: ROS names the 2x2 tile at the image's top-left corner, OpenCV the tile that starts at the
  second row and second column, so ROS `bayer_rggb` is OpenCV's `BayerBG`, `bggr` is `BayerRG`,
  `gbrg` is `BayerGR` and `grbg` is `BayerGB`.
- `sensor_msgs/CompressedImage`: `format` "jpeg" or "png", or image_transport's "bgr8; jpeg
  compressed bgr8" form; decoded with OpenCV. `compressedDepth` is refused.

Every failure (an unknown encoding, a buffer shorter than height x step, undecodable bytes) is a
`FrameError` naming the message's problem, so a caller can record it and go on to the next message.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import FrameError

# encoding -> (channels, bytes per channel, cv2 colour conversion code name or None for BGR already)
_RAW = {
    "bgr8": (3, 1, None), "8UC3": (3, 1, None), "rgb8": (3, 1, "COLOR_RGB2BGR"),
    "bgra8": (4, 1, "COLOR_BGRA2BGR"), "8UC4": (4, 1, "COLOR_BGRA2BGR"), "rgba8": (4, 1, "COLOR_RGBA2BGR"),
    "mono8": (1, 1, "COLOR_GRAY2BGR"), "8UC1": (1, 1, "COLOR_GRAY2BGR"),
    "bgr16": (3, 2, None), "rgb16": (3, 2, "COLOR_RGB2BGR"),
    "bgra16": (4, 2, "COLOR_BGRA2BGR"), "rgba16": (4, 2, "COLOR_RGBA2BGR"),
    "mono16": (1, 2, "COLOR_GRAY2BGR"),
    # two bytes per pixel, chroma shared by each pair of pixels
    "yuv422": (2, 1, "COLOR_YUV2BGR_UYVY"), "uyvy": (2, 1, "COLOR_YUV2BGR_UYVY"),
    "yuv422_yuy2": (2, 1, "COLOR_YUV2BGR_YUYV"), "yuyv": (2, 1, "COLOR_YUV2BGR_YUYV"),
}
_BAYER = {"rggb": "COLOR_BayerBG2BGR", "bggr": "COLOR_BayerRG2BGR", "gbrg": "COLOR_BayerGR2BGR",
          "grbg": "COLOR_BayerGB2BGR"}
for _tile, _code in _BAYER.items():
    _RAW[f"bayer_{_tile}8"] = (1, 1, _code)
    _RAW[f"bayer_{_tile}16"] = (1, 2, _code)

ENCODINGS = tuple(sorted(_RAW))
COMPRESSED_FORMATS = ("jpeg", "png")


def _buffer(data: Any) -> np.ndarray:
    """The message's `data` (numpy array, bytes, array.array, memoryview or a list of ints) as uint8."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    try:
        return np.frombuffer(memoryview(data), dtype=np.uint8)
    except TypeError:
        return np.asarray(data, dtype=np.uint8).reshape(-1)


def to_8bit(samples: np.ndarray) -> np.ndarray:
    """16-bit samples -> 8 bits over the full range: round(v x 255 / 65535) (65535 is white)."""
    wide = samples.astype(np.uint32)
    return ((wide * 255 + 32767) // 65535).astype(np.uint8)


def image_to_frame(msg: Any) -> np.ndarray:
    """A `sensor_msgs/Image` -> a BGR `uint8 [H,W,3]` frame (a new array; the message is not kept).

    Raises FrameError for an unknown encoding or a buffer that does not hold height x step bytes."""
    import cv2

    encoding = str(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if encoding not in _RAW:
        raise FrameError(f"sensor_msgs/Image encoding {encoding!r} is not supported; supported: "
                         f"{', '.join(ENCODINGS)} (or publish CompressedImage jpeg/png)")
    channels, size, code = _RAW[encoding]
    row = width * channels * size
    if height <= 0 or width <= 0:
        raise FrameError(f"sensor_msgs/Image is empty ({width} x {height} {encoding})")
    if encoding.startswith(("yuv422", "uyvy", "yuyv")) and width % 2:
        raise FrameError(f"{encoding} needs an even width (two pixels share their chroma), got {width}")
    if step < row:
        raise FrameError(f"sensor_msgs/Image step {step} is shorter than a row of {width} {encoding} pixels "
                         f"({row} bytes): a corrupt message")
    data = _buffer(msg.data)
    need = step * (height - 1) + row          # the last row's padding may be left out
    if data.size < need:
        raise FrameError(f"sensor_msgs/Image data holds {data.size} bytes, a {width} x {height} {encoding} image "
                         f"with step {step} needs {need}: a truncated message")
    if data.size < step * height:
        data = np.concatenate([data, np.zeros(step * height - data.size, np.uint8)])
    rows = data[: step * height].reshape(height, step)[:, :row]
    if size == 2:
        order = ">" if bool(msg.is_bigendian) else "<"
        samples = np.ascontiguousarray(rows).view(f"{order}u2")
        pixels = to_8bit(samples).reshape(height, width, channels)
    else:
        pixels = rows.reshape(height, width, channels)
    if code is None:
        return np.ascontiguousarray(pixels)
    pixels = np.ascontiguousarray(pixels[..., 0] if channels == 1 else pixels)
    return cv2.cvtColor(pixels, getattr(cv2, code))


def compressed_to_frame(msg: Any) -> np.ndarray:
    """A `sensor_msgs/CompressedImage` (jpeg or png) -> a BGR `uint8 [H,W,3]` frame.

    Raises FrameError for another format (compressedDepth, ...) or bytes OpenCV cannot decode."""
    import cv2

    fmt = str(msg.format).strip()
    lowered = fmt.lower()
    if "compresseddepth" in lowered:
        raise FrameError(f"CompressedImage format {fmt!r} is a depth image; caption a colour or mono topic")
    kind = lowered.split(";")[-1].split()[0] if lowered else ""
    if kind not in ("jpeg", "jpg", "png"):
        raise FrameError(f"CompressedImage format {fmt!r} is not supported: jpeg or png "
                         "(image_transport's 'compressed' topics)")
    data = _buffer(msg.data)
    frame = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if frame is None:
        raise FrameError(f"CompressedImage ({fmt}, {data.size} bytes) could not be decoded: a corrupt message")
    return frame


def message_to_frame(msg: Any) -> np.ndarray:
    """An Image or a CompressedImage (told apart by their fields) -> a BGR frame; FrameError otherwise."""
    if hasattr(msg, "format") and hasattr(msg, "data") and not hasattr(msg, "encoding"):
        return compressed_to_frame(msg)
    if hasattr(msg, "encoding") and hasattr(msg, "step"):
        return image_to_frame(msg)
    raise FrameError(f"{type(msg).__name__} is neither a sensor_msgs/Image nor a sensor_msgs/CompressedImage")


def stamp_ns(msg: Any) -> int:
    """The message header's stamp in nanoseconds (ROS 1 and ROS 2 field names alike)."""
    stamp = msg.header.stamp
    nanos = getattr(stamp, "nanosec", None)
    if nanos is None:
        nanos = getattr(stamp, "nsec", 0)
    secs = getattr(stamp, "sec", None)
    if secs is None:
        secs = getattr(stamp, "secs", 0)
    return int(secs) * 1_000_000_000 + int(nanos)


def frame_to_image_fields(frame: np.ndarray) -> dict[str, Any]:
    """A BGR frame -> the fields of a `bgr8` sensor_msgs/Image (height, width, encoding, is_bigendian,
    step, data as bytes): what the ROS 2 node publishes as the annotated image."""
    frame = np.ascontiguousarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise FrameError(f"expected a uint8 [H,W,3] BGR frame, got {frame.dtype} {frame.shape}")
    height, width = frame.shape[:2]
    return {"height": height, "width": width, "encoding": "bgr8", "is_bigendian": 0, "step": width * 3,
            "data": frame.tobytes()}
