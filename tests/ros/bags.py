"""Bags written with the real libraries (rosbags' ROS 1 and ROS 2 writers), holding known images.

The pixels are built here with numpy in each encoding's own layout (see test_convert.py for the
constructions checked one by one); the messages are rosbags' own message classes."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

ENCODINGS = ("rgb8", "bgr8", "mono8", "rgba8", "bgra8", "mono16", "yuv422", "bayer_rggb8", "bayer_bggr8",
             "bayer_gbrg8", "bayer_grbg8")
RAW, COMPRESSED = "/cam/image_raw", "/cam/image_raw/compressed"
T0 = 1_700_000_000 * 10**9                     # header stamps; log times are 5 ms later (a recorder's delay)
LOG_DELAY = 5_000_000


def scene(i: int, h: int = 48, w: int = 64) -> np.ndarray:
    """A BGR image that differs per index: a coloured rectangle on a gradient."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([(x * 4 + i * 20) % 256, (y * 5) % 256, np.full((h, w), (i * 37) % 256)], -1).astype(np.uint8)
    img[h // 4: h // 2, w // 3: w // 3 + 10 + i] = ((i * 70) % 256, 200, 255 - i * 10)
    return img


def encode(img: np.ndarray, encoding: str) -> tuple[np.ndarray, int]:
    """(the rows' bytes [H, step], step) of `img` in `encoding`, each row padded by 4 bytes."""
    h, w = img.shape[:2]
    gray = np.rint(img @ np.array([0.114, 0.587, 0.299])).astype(np.uint8)
    if encoding in ("bgr8", "rgb8", "bgra8", "rgba8"):
        px = img if encoding.startswith("bgr") else img[..., ::-1]
        if encoding.endswith("a8"):
            px = np.concatenate([px, np.full((h, w, 1), 255, np.uint8)], 2)
        rows = px.reshape(h, -1)
    elif encoding == "mono8":
        rows = gray
    elif encoding == "mono16":
        rows = (gray.astype(np.uint16) * 257).astype("<u2").view(np.uint8).reshape(h, -1)
    elif encoding == "yuv422":                 # UYVY, BT.601 limited range, chroma of the left pixel
        b, g, r = (img[..., k].astype(np.float64) for k in range(3))
        yy = 16 + 0.257 * r + 0.504 * g + 0.098 * b
        u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
        v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
        packed = np.stack([u[:, 0::2], yy[:, 0::2], v[:, 0::2], yy[:, 1::2]], -1)
        rows = np.clip(np.rint(packed), 0, 255).astype(np.uint8).reshape(h, -1)
    elif encoding.startswith("bayer_"):
        tile = encoding[6:10]
        rows = np.empty((h, w), np.uint8)
        for k, colour in enumerate(tile):
            dy, dx = divmod(k, 2)
            rows[dy::2, dx::2] = img[dy::2, dx::2, "bgr".index(colour)]
    else:
        raise ValueError(encoding)
    padded = np.concatenate([rows, np.zeros((h, 4), np.uint8)], 1)
    return padded, padded.shape[1]


def _types(ros1: bool):
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS1_NOETIC if ros1 else Stores.ROS2_HUMBLE)
    return store, store.types


def messages(ros1: bool, count_per_encoding: int = 1, size: tuple[int, int] = (48, 64)):
    """(topic, msgtype, log time ns, message object or raw bytes) in time order: every encoding, then jpeg,
    png, and one corrupt message (bytes that are no Image) on the raw topic."""
    from PIL import Image as PILImage

    store, t = _types(ros1)
    out = []
    i = 0

    def header(k: int):
        stamp = t["builtin_interfaces/msg/Time"](sec=(T0 + k * 50_000_000) // 10**9,
                                                   nanosec=(T0 + k * 50_000_000) % 10**9)
        kw = {"seq": k} if ros1 else {}
        return t["std_msgs/msg/Header"](stamp=stamp, frame_id="cam", **kw)

    for _ in range(count_per_encoding):
        for encoding in ENCODINGS:
            rows, step = encode(scene(i, *size), encoding)
            msg = t["sensor_msgs/msg/Image"](header=header(i), height=rows.shape[0], width=size[1],
                                             encoding=encoding, is_bigendian=0, step=step, data=rows.reshape(-1))
            out.append((RAW, "sensor_msgs/msg/Image", T0 + i * 50_000_000 + LOG_DELAY, msg))
            i += 1
        for fmt in ("jpeg", "png"):
            buf = io.BytesIO()
            PILImage.fromarray(np.ascontiguousarray(scene(i, *size)[..., ::-1])).save(buf, format=fmt.upper())
            msg = t["sensor_msgs/msg/CompressedImage"](header=header(i), format=fmt,
                                                       data=np.frombuffer(buf.getvalue(), np.uint8))
            out.append((COMPRESSED, "sensor_msgs/msg/CompressedImage", T0 + i * 50_000_000 + LOG_DELAY, msg))
            i += 1
    out.append((RAW, "sensor_msgs/msg/Image", T0 + i * 50_000_000 + LOG_DELAY, b"\x00\x01\x00\x00corrupt"))
    return out


def write_bag(path: Path, kind: str, items) -> Path:
    """Write `items` (from `messages`) as a ROS 1 .bag (kind "ros1"), or a ROS 2 bag directory with sqlite3
    or MCAP storage ("sqlite3", "mcap"). Returns what to open: the .bag, the directory, or the .mcap file."""
    ros1 = kind == "ros1"
    store, _ = _types(ros1)
    if ros1:
        from rosbags.rosbag1 import Writer

        writer = Writer(path)
    else:
        from rosbags.rosbag2 import StoragePlugin, Writer

        writer = Writer(path, version=9, storage_plugin=StoragePlugin.SQLITE3 if kind == "sqlite3"
                        else StoragePlugin.MCAP)
    serialize = store.serialize_ros1 if ros1 else store.serialize_cdr
    with writer:
        connections = {}
        for topic, msgtype, log_ns, msg in items:
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msgtype, typestore=store)
            data = msg if isinstance(msg, bytes) else serialize(msg, msgtype)
            writer.write(connections[topic], log_ns, data)
    if kind == "mcap":
        return next(path.glob("*.mcap"))
    return path
