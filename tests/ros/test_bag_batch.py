"""`edge-caption batch` over ROS 1, ROS 2 sqlite3 and ROS 2 MCAP bags written with rosbags' writers: every
message becomes exactly one row, captioned as `caption()` captions the converted frame; the corrupt one is an
error row; the caption MCAP (written with Foxglove's mcap-ros2 writer) is read back with rosbags and matched."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags")
pytest.importorskip("mcap_ros2")
pq = pytest.importorskip("pyarrow.parquet")

from edge_caption import EdgeCaptioner  # noqa: E402
from edge_caption.cli import main  # noqa: E402
from edge_caption.ros.convert import message_to_frame, stamp_ns  # noqa: E402

from .bags import COMPRESSED, ENCODINGS, LOG_DELAY, RAW, T0, messages, write_bag  # noqa: E402


@pytest.fixture(scope="module")
def captioner():
    with EdgeCaptioner() as cap:
        yield cap


@pytest.mark.parametrize("kind", ["ros1", "sqlite3", "mcap"])
def test_batch_captions_every_message_once_as_caption_does(kind, tmp_path, captioner, capsys):
    items = messages(ros1=kind == "ros1")
    bag = write_bag(tmp_path / ("drive.bag" if kind == "ros1" else "drive"), kind, items)
    out, bag_out = tmp_path / "captions", tmp_path / "captions.mcap"
    code = main(["batch", str(bag), "--topic", RAW, "--topic", COMPRESSED, "--out", str(out), "--fps", "0",
                 "--bag-out", str(bag_out), "--json"])
    assert code == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    n = len(ENCODINGS) + 2 + 1
    assert report["rows"] == n and report["errors"] == 1 and report["captions"] == n - 1

    table = pq.read_table(out)
    assert table.column_names == ["path", "frame_time", "caption", "score", "model", "error", "topic", "stamp_ns"]
    rows = table.to_pylist()
    assert len(rows) == n
    model = f"{captioner.manifest.name}@{captioner.manifest.version}"
    for row, (topic, _, log_ns, msg) in zip(rows, items):          # one row per message, in log-time order
        assert row["path"] == str(bag) and row["topic"] == topic and row["model"] == model
        assert row["frame_time"] == pytest.approx((log_ns - (T0 + LOG_DELAY)) / 1e9, abs=1e-9)
        if isinstance(msg, bytes):
            assert row["caption"] is None and row["score"] is None and row["stamp_ns"] is None
            assert "could not be deserialized" in row["error"]
            continue
        expected = captioner.caption(message_to_frame(msg))
        assert row["error"] is None and row["stamp_ns"] == stamp_ns(msg) == log_ns - LOG_DELAY
        assert row["caption"] == expected.text and row["score"] == pytest.approx(expected.score, abs=1e-4)

    # The captions MCAP, read back with rosbags (the writer was Foxglove's mcap-ros2-support).
    from rosbags.highlevel import AnyReader

    with AnyReader([bag_out]) as reader:
        assert {c.topic: c.msgtype for c in reader.connections} == {
            RAW + "/caption": "std_msgs/msg/String", COMPRESSED + "/caption": "std_msgs/msg/String"}
        back = [(c.topic, t, reader.deserialize(raw, c.msgtype).data) for c, t, raw in reader.messages()]
    written = [(row["topic"] + "/caption", row["stamp_ns"], row["caption"]) for row in rows if row["error"] is None]
    assert back == written
    assert not list(tmp_path.glob(".*.partial"))


def test_fps_samples_each_topic_in_message_time(tmp_path, capsys):
    bag = write_bag(tmp_path / "drive", "mcap", messages(ros1=False))
    out = tmp_path / "out"
    assert main(["batch", str(bag), "--out", str(out), "--fps", "10"]) == 0      # no --topic: every image topic
    rows = pq.read_table(out).to_pylist()
    times = {topic: [r["frame_time"] for r in rows if r["topic"] == topic] for topic in (RAW, COMPRESSED)}
    # raw messages every 50 ms from 0 to 0.5 s, then the corrupt one at 0.65 s; compressed at 0.55 and 0.6 s
    assert times[RAW] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.65])
    assert times[COMPRESSED] == pytest.approx([0.55, 0.6])
    assert "wrote 9 captions (1 rows with an error)" in capsys.readouterr().out


def test_bag_mistakes_are_client_errors(tmp_path, capsys):
    bag = write_bag(tmp_path / "drive.bag", "ros1", messages(ros1=True))
    assert main(["batch", str(bag), "--topic", "/nope", "--out", str(tmp_path / "a")]) == 2
    assert f"has no topic '/nope'; its image topics: {RAW}, {COMPRESSED}" in capsys.readouterr().err
    image = tmp_path / "x.jpg"
    image.write_bytes(b"")
    assert main(["batch", str(bag), str(image), "--out", str(tmp_path / "b")]) == 2
    assert "cannot be captioned in one run" in capsys.readouterr().err
    assert main(["batch", str(bag), "--out", str(tmp_path / "c"), "--bag-out", str(tmp_path / "c.txt")]) == 2
    assert "name it *.mcap" in capsys.readouterr().err
    not_a_bag = tmp_path / "junk.mcap"
    not_a_bag.write_bytes(b"not an mcap file at all")
    assert main(["batch", str(not_a_bag), "--out", str(tmp_path / "d")]) == 2
    assert "cannot read" in capsys.readouterr().err and not (tmp_path / "d").exists()
