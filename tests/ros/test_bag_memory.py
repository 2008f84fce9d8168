"""A 2,000-frame 640 x 480 bag is captioned by `edge-caption batch` in bounded memory: the USS of the command
(summed with any child processes) grows by less than 5% from the first to the last 10% of the run.

Slow (about a minute on 2 cores): `python -m pytest -m slow tests/ros/test_bag_memory.py -s` prints the numbers."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("rosbags")
psutil = pytest.importorskip("psutil")
pytest.importorskip("pyarrow")

pytestmark = pytest.mark.slow
FRAMES, SIZE, TOPIC = 2000, (480, 640), "/front/image_raw/compressed"


def write_drive(path) -> object:
    """An MCAP bag of FRAMES jpeg CompressedImages at 30 fps: a moving scene of shapes on a gradient."""
    import cv2
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_HUMBLE)
    t = store.types
    h, w = SIZE
    y, x = np.mgrid[0:h, 0:w]
    background = np.stack([x * 255 // w, y * 255 // h, np.full((h, w), 90)], -1).astype(np.uint8)
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection(TOPIC, "sensor_msgs/msg/CompressedImage", typestore=store)
        for i in range(FRAMES):
            frame = background.copy()
            cx = 60 + (i * 7) % (w - 120)
            cv2.circle(frame, (cx, h // 2), 50, (0, 0, 220), -1)
            cv2.rectangle(frame, (w - cx - 40, 60), (w - cx + 40, 140), (200, 60, 0), -1)
            ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])
            stamp_ns = 1_700_000_000_000_000_000 + i * 33_333_333
            stamp = t["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
            msg = t["sensor_msgs/msg/CompressedImage"](header=t["std_msgs/msg/Header"](stamp=stamp, frame_id="cam"),
                                                       format="jpeg", data=jpeg.reshape(-1))
            writer.write(conn, stamp_ns + 2_000_000, store.serialize_cdr(msg, msg.__msgtype__))
    return next(path.glob("*.mcap"))


def uss(process) -> int:
    """USS of a process and all its children (workers), in bytes; processes gone meanwhile count 0."""
    total = 0
    for p in [process, *process.children(recursive=True)]:
        try:
            total += p.memory_full_info().uss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def test_a_long_bag_is_captioned_in_bounded_memory(tmp_path):
    bag = write_drive(tmp_path / "drive")
    out = tmp_path / "captions"
    command = [sys.executable, "-m", "edge_caption.cli", "batch", str(bag), "--topic", TOPIC, "--out", str(out),
               "--fps", "0", "--bag-out", str(tmp_path / "captions.mcap"), "--json"]
    start = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watched = psutil.Process(proc.pid)
    samples = []                      # (seconds since start, USS bytes)
    while proc.poll() is None:
        try:
            samples.append((time.monotonic() - start, uss(watched)))
        except psutil.NoSuchProcess:
            break
        time.sleep(0.1)
    stdout, stderr = proc.communicate()
    assert proc.returncode == 0, stderr
    report = json.loads(stdout.strip().splitlines()[-1])
    assert report["rows"] == FRAMES and report["errors"] == 0 and report["captions"] == FRAMES
    samples = [s for s in samples if s[1] > 0]
    total = samples[-1][0]
    first = max(m for t, m in samples if t <= 0.1 * total)
    last = max(m for t, m in samples if t >= 0.9 * total)
    growth = (last - first) / first
    print(f"\n{FRAMES} frames 640x480 jpeg: {report['rows_per_s']} rows/s ({report['seconds']} s captioning, "
          f"{total:.1f} s with start-up); USS max over the first 10% {first / 2**20:.1f} MiB, over the last 10% "
          f"{last / 2**20:.1f} MiB: {growth:+.2%}; peak {max(m for _, m in samples) / 2**20:.1f} MiB, "
          f"{len(samples)} samples")
    deciles = [max((m for t, m in samples if k * total / 10 <= t <= (k + 1) * total / 10), default=0) / 2**20
               for k in range(10)]
    print("USS max per tenth of the run (MiB): " + " ".join(f"{d:.1f}" for d in deciles))
    assert growth < 0.05, f"memory grew {growth:.1%} from the first to the last 10% of the run"
