"""A bag replayed as a stream (`rosbag:///...`): every message read is captioned, dropped or gated; without a
rate nothing is dropped (back-pressure), with `rate=1` the latest-frame policy drops what inference misses;
events carry the messages' header stamps. And the topic source the ROS 2 node feeds."""
from __future__ import annotations

import json
import threading
import time

import pytest

pytest.importorskip("rosbags")

from edge_caption import EdgeCaptioner  # noqa: E402
from edge_caption.cli import main  # noqa: E402
from edge_caption.errors import SourceError  # noqa: E402
from edge_caption.ros.convert import message_to_frame, stamp_ns  # noqa: E402
from edge_caption.stream.ros import TopicSource, parse_rosbag_uri  # noqa: E402
from edge_caption.stream.runner import CaptionStream, StreamOptions  # noqa: E402

from .bags import ENCODINGS, RAW, messages, write_bag  # noqa: E402


@pytest.fixture(scope="module")
def captioner():
    with EdgeCaptioner() as cap:
        yield cap


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    items = messages(ros1=False)
    return write_bag(tmp_path_factory.mktemp("bags") / "drive", "mcap", items), items


class Slow:
    """A captioner that takes `seconds` per batch: a replay at recorded speed must then drop frames."""

    def __init__(self, captioner, seconds: float):
        self.captioner, self.seconds = captioner, seconds

    def caption_batch(self, frames, **kw):
        time.sleep(self.seconds)
        return self.captioner.caption_batch(frames, **kw)


def _accounted(stats):
    return stats["read"] == stats["captioned"] + stats["dropped"] + stats["gated"]


def test_replay_as_fast_as_inference_drops_nothing(bag, captioner):
    path, items = bag
    uri = f"rosbag://{path}?topic={RAW}"
    raw = [msg for topic, _, _, msg in items if topic == RAW]
    with CaptionStream(Slow(captioner, 0.02), [uri], StreamOptions()) as stream:
        events = list(stream)
        stats = stream.stats()[0]
    assert stats["read"] == len(raw) == len(ENCODINGS) + 1
    assert stats["captioned"] == len(ENCODINGS) and stats["dropped"] == 1 == stats["corrupt"] and _accounted(stats)
    assert [e.frame_index for e in events] == list(range(len(ENCODINGS)))
    for event, msg in zip(events, raw):
        assert event.source == uri and event.timestamp == stamp_ns(msg) / 1e9
        assert event.caption.text == captioner.caption(message_to_frame(msg)).text
    assert sum(e.dropped for e in events) <= 1      # the corrupt message only (no frame overwritten)


def test_replay_at_recorded_speed_drops_what_inference_misses(bag, captioner):
    path, items = bag
    # 50 ms between messages, 150 ms per caption: most frames are overwritten in the mailbox, and counted.
    with EdgeCaptioner() as cap:
        with CaptionStream(Slow(cap, 0.15), [f"rosbag://{path}?topic={RAW}&rate=1"], StreamOptions()) as stream:
            events = list(stream)
            stats = stream.stats()[0]
    assert stats["read"] == len(ENCODINGS) + 1 and _accounted(stats)
    assert stats["dropped"] > 1 and 0 < stats["captioned"] < len(ENCODINGS)
    assert sum(e.dropped for e in events) >= stats["dropped"] - 2      # each event says what it missed
    assert all(b.timestamp > a.timestamp for a, b in zip(events, events[1:]))


def test_stream_options_apply_to_a_replay(bag, captioner):
    path, _ = bag
    with captioner.stream(f"rosbag://{path}", every_n=3, gate=1.0) as stream:      # both topics, every 3rd
        events = list(stream)
        stats = stream.stats()[0]
    # 14 messages: indices 0, 3, 6, 9, 12 pass every_n; the gate passes the first only (nothing differs by 100%)
    assert stats["read"] == 14 and stats["captioned"] == 1 and stats["gated"] == 4 and _accounted(stats)
    assert len(events) == 1


def test_the_stream_command_replays_a_bag(bag, capsys):
    path, _ = bag
    assert main(["stream", "--source", f"rosbag://{path}?topic={RAW}", "--json"]) == 0
    out = capsys.readouterr()
    events = [json.loads(line) for line in out.out.strip().splitlines()]
    stats = json.loads(out.err.strip().splitlines()[-1])["stats"][0]
    assert len(events) == len(ENCODINGS) and stats["read"] == len(ENCODINGS) + 1 and _accounted(stats)


def test_bad_uris_say_how_to_write_one(tmp_path, captioner):
    assert parse_rosbag_uri("rosbag:///a/b.mcap?topic=/x&topic=/y&rate=0.5") == ("/a/b.mcap", ["/x", "/y"], 0.5)
    assert parse_rosbag_uri("rosbag://rel/b.bag") == ("rel/b.bag", [], None)
    with pytest.raises(SourceError, match="rate must be a number > 0"):
        parse_rosbag_uri("rosbag:///a.mcap?rate=fast")
    with pytest.raises(SourceError, match="unknown parameter"):
        parse_rosbag_uri("rosbag:///a.mcap?topics=/x")
    with pytest.raises(SourceError, match="no bag at"):
        captioner.stream(f"rosbag://{tmp_path}/missing.mcap")


def test_topic_source_fed_by_a_subscriber(captioner):
    items = [msg for _, _, _, msg in messages(ros1=False) if not isinstance(msg, bytes)]
    bad = type(items[0])(header=items[0].header, height=2, width=2, encoding="weird", is_bigendian=0, step=2,
                         data=items[0].data[:4])
    source = TopicSource()

    def publish():
        for msg in [*items[:5], bad, *items[5:]]:
            source.put(msg)
            time.sleep(0.01)
        source.finish()

    threading.Thread(target=publish, daemon=True).start()
    with captioner.stream(source) as stream:
        events = list(stream)
        stats = stream.stats()[0]
    assert stats["read"] == len(items) + 1 and stats["corrupt"] == 1 and _accounted(stats)
    stamps = {stamp_ns(m) / 1e9: m for m in items}
    for event in events:
        assert event.caption.text == captioner.caption(message_to_frame(stamps[event.timestamp])).text
