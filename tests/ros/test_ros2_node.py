"""The ROS 2 node's logic without ROS: its parameters, and messages in -> captions (and annotated images) out
through `run`, with publishers recorded here. The rclpy shell itself (`main`) needs ROS 2 and is not run."""
from __future__ import annotations

import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("rosbags")

from edge_caption import EdgeCaptioner  # noqa: E402
from edge_caption.errors import OptionError  # noqa: E402
from edge_caption.ros.convert import image_to_frame, message_to_frame, stamp_ns  # noqa: E402
from edge_caption.ros2 import run, settings  # noqa: E402
from edge_caption.stream.ros import TopicSource  # noqa: E402

from .bags import messages  # noqa: E402


def test_importing_the_node_module_does_not_need_rclpy():
    assert "rclpy" not in sys.modules


def test_parameters_become_captioner_and_stream_settings():
    s = settings({"image_topic": "/front/image_raw/compressed", "max_rate": 2.0, "num_beams": 3, "gate": 0.05})
    assert s.compressed and s.caption_topic == "/front/image_raw/compressed/caption" and s.bundle is None
    assert s.decoding == {"num_beams": 3} and s.stream == {"every_n": 1, "emit": "always", "keep_frames": False,
                                                           "max_rate": 2.0, "gate": 0.05}
    s = settings({"image_topic": "/cam", "annotated_topic": "/cam/annotated", "caption_topic": "/said"})
    assert not s.compressed and s.caption_topic == "/said" and s.stream["keep_frames"] and s.decoding == {}
    with pytest.raises(OptionError, match="unknown parameter"):
        settings({"topic": "/cam"})
    with pytest.raises(OptionError, match="every_n"):
        settings({"every_n": 0})


def test_messages_in_captions_and_annotated_images_out():
    items = [msg for _, _, _, msg in messages(ros1=False) if not isinstance(msg, bytes)]
    config = settings({"image_topic": "/cam/image_raw", "annotated_topic": "/cam/annotated"})
    source = TopicSource(config.image_topic)
    said, drawn = [], []

    def publish():
        for msg in items:
            source.put(msg)
            time.sleep(0.02)
        source.finish()

    threading.Thread(target=publish, daemon=True).start()
    with EdgeCaptioner() as captioner:
        stats = run(captioner, source, config, lambda text, e: said.append((text, e.timestamp)),
                    lambda fields, e: drawn.append(fields))
        by_stamp = {stamp_ns(m) / 1e9: m for m in items}
        for text, stamp in said:
            assert text == captioner.caption(message_to_frame(by_stamp[stamp])).text
    assert stats[0]["read"] == len(items) and stats[0]["captioned"] == len(said) >= 1
    assert stats[0]["read"] == stats[0]["captioned"] + stats[0]["dropped"] + stats[0]["gated"]
    assert len(drawn) == len(said)
    frame = image_to_frame(type("Image", (), drawn[0])())
    assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8


def test_nothing_ros_loads_on_import_and_a_missing_library_says_how_to_install_it():
    import subprocess

    code = ("import sys, edge_caption, edge_caption.ros, edge_caption.ros.bag, edge_caption.ros.batch, "
            "edge_caption.ros.mcap_out, edge_caption.ros2, edge_caption.stream.ros, edge_caption.cli; "
            "loaded = [m for m in sys.modules if m.startswith(('rosbags', 'mcap', 'pyarrow', 'rclpy', 'torch'))]; "
            "assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True)
    from edge_caption.errors import BackendUnavailableError
    from edge_caption.ros import require

    with pytest.raises(BackendUnavailableError, match=r"mcap-ros2-support is not installed; install it with: "
                                                      r"pip install 'edge-caption\[ros\]'"):
        require("mcap_ros2.no_such_module")
