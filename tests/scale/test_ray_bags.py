"""Many ROS bags through Ray Data (`batch BAG ... --ray-address local`): the same rows as the in-process path,
each message exactly once, the corrupt one an error row, stamps kept to the nanosecond, and the MCAP."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("ray")
pytest.importorskip("ray.data")
pytest.importorskip("rosbags")
pq = pytest.importorskip("pyarrow.parquet")

from edge_caption.cli import main  # noqa: E402

from ..ros.bags import COMPRESSED, ENCODINGS, RAW, messages, write_bag  # noqa: E402

pytestmark = pytest.mark.scale


def test_bags_through_ray_match_the_in_process_path(tmp_path, capsys):
    bags = [str(write_bag(tmp_path / "a.bag", "ros1", messages(ros1=True))),
            str(write_bag(tmp_path / "b", "sqlite3", messages(ros1=False)))]
    assert main(["batch", *bags, "--out", str(tmp_path / "local"), "--fps", "0"]) == 0
    assert main(["batch", *bags, "--out", str(tmp_path / "ray"), "--fps", "0", "--ray-address", "local",
                 "--concurrency", "1", "--batch-size", "4", "--bag-out", str(tmp_path / "c.mcap"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    n = 2 * (len(ENCODINGS) + 3)
    assert report["rows"] == n and report["errors"] == 2 and report["captions"] == n - 2

    def rows(out):
        table = pq.read_table(out)
        assert table.column_names == ["path", "frame_time", "caption", "score", "model", "error", "topic", "stamp_ns"]
        return sorted((r["path"].rsplit("/", 1)[-1], r["topic"], r["frame_time"], r["stamp_ns"], r["caption"],
                       r["error"] is None) for r in table.to_pylist())

    local, ray_rows = rows(tmp_path / "local"), rows(tmp_path / "ray")
    assert ray_rows == local and len(local) == n
    assert {r[1] for r in local} == {RAW, COMPRESSED}

    from rosbags.highlevel import AnyReader

    with AnyReader([tmp_path / "c.mcap"]) as reader:
        back = sorted((c.topic, t, reader.deserialize(raw, c.msgtype).data) for c, t, raw in reader.messages())
    assert back == sorted((r[1] + "/caption", r[3], r[4]) for r in local if r[5])
