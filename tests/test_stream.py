"""Streaming on the CPU backend: ordering, accounting, gating, reconnection, several sources, shutdown."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest

from edge_caption import EdgeCaptioner
from edge_caption.evaluation import scenes
from edge_caption.errors import OptionError, SourceError
from edge_caption.stream import Source


@pytest.fixture(scope="module")
def cap():
    with EdgeCaptioner(backend="onnxruntime") as captioner:
        yield captioner


@pytest.fixture(scope="module")
def video_frames():
    return [frame for frame, _ in scenes.scene_video(1, frames=90, size=(160, 160))]


def paced(frames, fps=60.0):
    for frame in frames:
        time.sleep(1.0 / fps)
        yield frame


def accounted(stats):
    return stats["captioned"] + stats["dropped"] + stats["gated"] + stats["waiting"]


def _capture_threads():
    return [t for t in threading.enumerate() if t.name.startswith("edge-caption capture")]


def test_the_stream_captions_through_the_public_caption_batch(video_frames, monkeypatch):
    calls = []
    with EdgeCaptioner(backend="onnxruntime") as captioner:
        batch = captioner.caption_batch
        monkeypatch.setattr(captioner, "caption_batch", lambda frames, **kw: calls.append(kw) or batch(frames, **kw))
        with captioner.stream(list(video_frames[:3]), return_attention=True) as stream:
            events = list(stream)
    assert events and calls and all(kw == {"return_attention": True} for kw in calls)
    assert all(e.caption.attention.shape[1:] == captioner.manifest.attention_grid for e in events)


def test_fast_source_drops_are_counted_and_order_kept(cap, video_frames):
    with cap.stream(list(video_frames)) as stream:     # a list of arrays is one source, read at once
        events = list(stream)
        stats = stream.stats()[0]
    assert stats["read"] == len(video_frames) == accounted(stats)
    assert stats["captioned"] == len(events) >= 1
    indices = [e.frame_index for e in events]
    assert indices == sorted(indices) and len(set(indices)) == len(indices)
    assert sum(e.dropped for e in events) <= stats["dropped"]
    assert all(e.source == 0 and e.latency_ms >= 0 and e.frame is None for e in events)


def test_every_n_and_max_rate(cap, video_frames):
    with cap.stream(paced(video_frames[:30]), every_n=3) as stream:
        events = list(stream)
        stats = stream.stats()[0]
    assert events and all(e.frame_index % 3 == 0 for e in events)
    assert stats["read"] == 30 == accounted(stats) and stats["dropped"] >= 20
    start = time.monotonic()
    with cap.stream(paced(video_frames, fps=100), max_rate=5) as stream:
        events = list(stream)
    elapsed = time.monotonic() - start
    assert 1 <= len(events) <= 5 * elapsed + 2


def test_gate_skips_an_unchanged_view_and_emit_changed(cap):
    still = scenes.render([scenes.Thing("circle", "red", "large", 0.3, 0.5)], np.random.default_rng(0), (96, 96),
                          noise=0.0)
    other = scenes.render([scenes.Thing("square", "blue", "large", 0.7, 0.5)], np.random.default_rng(0), (96, 96),
                          noise=0.0)
    with cap.stream(paced([still] * 20, fps=100), gate=0.02) as stream:
        events = list(stream)
        stats = stream.stats()[0]
    assert len(events) == 1 and stats["gated"] + stats["dropped"] == 19
    assert accounted(stats) == 20
    frames = [still] * 10 + [other] * 10 + [still] * 10
    with cap.stream(paced(frames, fps=30), emit="changed") as stream:
        events = list(stream)
        stats = stream.stats()[0]
    assert [e.caption.text for e in events] == [cap.caption(f).text for f in (still, other, still)]
    assert all(e.changed for e in events)
    assert stats["suppressed"] == stats["captioned"] - 3 and accounted(stats) == 30


class FlakySource(Source):
    """A live camera that drops out at the given frame numbers and comes back when reopened."""

    live = True

    def __init__(self, frames, fail_at=(), reopen_failures=0, uri="flaky://cam"):
        self.uri, self.frames, self.fail_at = uri, frames, set(fail_at)
        self.reopen_failures = reopen_failures
        self.position = 0
        self.opens = 0
        self.failed_once: set[int] = set()

    def open(self):
        self.opens += 1
        if self.opens > 1 and self.reopen_failures:
            self.reopen_failures -= 1
            raise SourceError(f"cannot open {self.uri}")

    def read(self):
        if self.position in self.fail_at and self.position not in self.failed_once:
            self.failed_once.add(self.position)
            raise SourceError(f"{self.uri} stopped delivering frames")
        if self.position >= len(self.frames):
            raise EOFError
        time.sleep(0.01)
        frame = self.frames[self.position]
        self.position += 1
        return frame


def test_reconnects_with_backoff_and_reports_the_gap(cap, video_frames):
    source = FlakySource(video_frames[:40], fail_at=(10, 25), reopen_failures=2)
    with cap.stream(source, backoff=(0.02, 0.05)) as stream:
        events = list(stream)
        stats = stream.stats()[0]
    assert stats["reconnects"] == 2 and source.opens == 5
    assert stats["read"] == 40 == accounted(stats)
    gaps = [e.gap_s for e in events if e.gap_s > 0]
    assert 1 <= len(gaps) <= 2 and min(gaps) >= 0.02      # two outages close together may share an event
    assert stats["gap_s"] == pytest.approx(sum(gaps))


def test_gives_up_after_max_retries_and_says_so(cap, video_frames):
    source = FlakySource(video_frames[:20], fail_at=(5,), reopen_failures=10)
    with pytest.raises(SourceError, match="gave up after 3 attempts"):
        list(cap.stream(source, backoff=(0.01, 0.01), max_retries=3))
    with pytest.raises(SourceError, match="not reopened: reconnect=False"):
        list(cap.stream(FlakySource(video_frames[:20], fail_at=(5,)), reconnect=False))
    assert not _capture_threads()


def test_corrupt_and_empty_frames_are_skipped_and_counted(cap, video_frames):
    junk = [None, np.zeros((0, 0, 3), np.uint8), np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 5), np.uint8)]
    frames = [video_frames[0], *junk, video_frames[1]]
    with cap.stream(paced(frames, fps=50)) as stream:
        events = list(stream)
        stats = stream.stats()[0]
    assert stats["corrupt"] == 4 and stats["read"] == 6 == accounted(stats)
    assert {e.frame_index for e in events} <= {0, 5}


def test_several_sources_are_tagged_and_accounted(cap, video_frames):
    sources = [paced(video_frames[:30], fps=60), paced(video_frames[30:60], fps=60), paced(video_frames[60:], fps=60)]
    with cap.stream(sources) as stream:
        events = list(stream)
        stats = stream.stats()
    assert {e.source for e in events} == {0, 1, 2}
    for i, per_source in enumerate(stats):
        assert per_source["read"] == 30 == accounted(per_source)
        indices = [e.frame_index for e in events if e.source == i]
        assert indices == sorted(indices)


def test_close_from_another_thread_leaves_no_thread(cap, video_frames):
    def forever():
        while True:
            yield from paced(video_frames[:10], fps=200)

    stream = cap.stream(forever())
    threading.Timer(0.4, stream.close).start()
    events = list(stream)
    assert events and not _capture_threads()
    stats = stream.stats()[0]
    assert stats["read"] == accounted(stats)


def test_video_file_source(cap, video_frames, tmp_path):
    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 120, (160, 160))
    for frame in video_frames[:24]:
        writer.write(frame)
    writer.release()
    with cap.stream(str(path)) as stream:
        events = list(stream)
        stats = stream.stats()[0]
    assert stats["read"] == 24 == accounted(stats) and events
    assert events[0].source == str(path)


def test_bad_sources_and_options_say_what_to_do(cap, tmp_path):
    with pytest.raises(SourceError, match="no video file at"):
        cap.stream(str(tmp_path / "missing.mp4"))
    with pytest.raises(SourceError, match="one array is a frame"):
        cap.stream(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(OptionError, match="every_n must be an integer >= 1"):
        cap.stream([np.zeros((8, 8, 3), np.uint8)], every_n=0)
    with pytest.raises(OptionError, match="unknown stream option.*valid: every_n"):
        cap.stream([np.zeros((8, 8, 3), np.uint8)], fps=3)
    from edge_caption.stream import gstreamer_available

    if not gstreamer_available():
        with pytest.raises(SourceError, match="GStreamer.*apt install python3-opencv"):
            cap.stream("csi://0")
        with pytest.raises(SourceError, match="GStreamer"):
            cap.stream("videotestsrc ! videoconvert ! appsink")


def test_caption_from_eight_threads_matches_serial(cap, video_frames):
    frames = video_frames[::6][:16]
    serial = [cap.caption(f, num_beams=2) for f in frames]
    results: dict[int, object] = {}

    def work(i):
        for j in range(i, len(frames), 8):
            results[j] = cap.caption(frames[j], num_beams=2)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [(results[i].text, results[i].token_ids) for i in range(len(frames))] == \
        [(c.text, c.token_ids) for c in serial]


def test_cli_stream_json_and_annotated_video(video_frames, tmp_path):
    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 60, (160, 160))
    for frame in video_frames[:20]:
        writer.write(frame)
    writer.release()
    out = subprocess.run([sys.executable, "-m", "edge_caption.cli", "stream", "--source", str(path), "--json",
                          "--out", str(tmp_path / "ann.mp4")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert rows and all(set(r) >= {"source", "frame_index", "text", "latency_ms", "dropped", "gated"} for r in rows)
    stats = json.loads(out.stderr.strip().splitlines()[-1])["stats"][0]
    assert stats["read"] == 20
    video = cv2.VideoCapture(str(tmp_path / "ann.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 20          # every frame read, captioned or not
    assert video.get(cv2.CAP_PROP_FPS) == pytest.approx(60)


def test_cli_annotated_video_keeps_every_frame_when_gated(video_frames, tmp_path):
    """A 3 s clip stays 3 s with gating (it became 0.33 s when only captioned frames were written); the
    closing statistics are a readable line without --json."""
    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (160, 160))
    for frame in video_frames:              # 90 frames, 3 s at 30 fps
        writer.write(frame)
    writer.release()
    out = subprocess.run([sys.executable, "-m", "edge_caption.cli", "stream", "--source", str(path), "--gate", "0.2",
                          "--out", str(tmp_path / "ann.mp4")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"[{path}] 90 frames read: ") and "gated" in last and not last.startswith("{")
    captioned = int(last.split("read: ")[1].split(" captioned")[0])
    assert 1 <= captioned < 90
    video = cv2.VideoCapture(str(tmp_path / "ann.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 90
    assert video.get(cv2.CAP_PROP_FPS) == pytest.approx(30)
    ok, first = video.read()
    assert ok and float(np.abs(first[-20:].astype(int) - video_frames[0][-20:]).mean()) > 10   # a caption band


def _default_sigint():
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_cli_ctrl_c_stops_cleanly(video_frames, tmp_path, signame):
    import signal

    path = tmp_path / "long.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (160, 160))
    for frame in video_frames * 4:          # 12 s at 30 fps
        writer.write(frame)
    writer.release()
    # A test run started in the background inherits an ignored SIGINT, and so would the child: Ctrl-C is
    # what this test sends, so the child gets the default disposition (Python turns it into KeyboardInterrupt).
    proc = subprocess.Popen([sys.executable, "-m", "edge_caption.cli", "stream", "--source", str(path), "--json",
                             "--out", str(tmp_path / "ann.mp4")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=_default_sigint)
    first = proc.stdout.readline()          # captioning has started
    assert json.loads(first)["frame_index"] >= 0
    proc.send_signal(getattr(signal, signame))
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    stats = json.loads(err.strip().splitlines()[-1])["stats"][0]
    assert 0 < stats["read"] < 360 and stats["read"] == stats["captioned"] + stats["dropped"] + stats["gated"]
    video = cv2.VideoCapture(str(tmp_path / "ann.mp4"))     # finished, not cut: its frames are all there
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == stats["read"]
