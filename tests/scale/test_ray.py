"""Ray Data: a few hundred frames from images and videos give the serial loop's captions, exactly
once each, though a captioning actor is killed mid-run; unreadable files become error rows."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from edge_caption import EdgeCaptioner, OptionError  # noqa: E402
from edge_caption.frames import expand_inputs, is_video, video_frames  # noqa: E402
from edge_caption.ray import COLUMNS, caption_images  # noqa: E402

from .conftest import write_scenes, write_video  # noqa: E402

pytestmark = pytest.mark.scale
FPS = 15.0


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """120 scene images, 3 scene videos (90 frames at 30 fps: 45 frames each at 15 fps), one broken file."""
    root = tmp_path_factory.mktemp("recordings")
    write_scenes(root, 120, seed=3)
    for seed in range(3):
        write_video(root / f"drive{seed}.mp4", seed, frames=90)
    (root / "broken.jpg").write_bytes(b"not a jpeg at all")
    return root


def serial(paths, fps):
    """The reference: one caption() per image and per sampled video frame, in a plain loop."""
    out = {}
    with EdgeCaptioner() as captioner:
        for path in paths:
            if is_video(path):
                for t, frame in video_frames(path, fps):
                    out[(path, t)] = captioner.caption(frame).text
            elif not path.endswith("broken.jpg"):
                out[(path, None)] = captioner.caption(path).text
    return out


def _actor_pids() -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if b"CaptionActor" in cmdline:
                pids.append(int(entry))
    return pids


def test_same_captions_as_a_serial_loop_with_an_actor_killed(local_ray, recordings):
    paths = expand_inputs(recordings)
    expected = serial(paths, FPS)
    assert len(expected) == 120 + 3 * 45

    ds = caption_images(str(recordings), fps=FPS, batch_size=8, concurrency=2)
    rows, killed = [], []
    for row in ds.iter_rows():
        rows.append(row)
        if len(rows) == 40:           # mid-run: most frames are still to come
            pids = _actor_pids()
            assert pids, "no captioning actor process found"
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])
    assert killed and len(rows) > 40

    keys = Counter((r["path"], r["frame_time"]) for r in rows)
    assert max(keys.values()) == 1, [k for k, n in keys.items() if n > 1][:5]
    assert len(rows) == len(expected) + 1
    errors = [r for r in rows if r["error"] is not None]
    assert len(errors) == 1 and errors[0]["path"].endswith("broken.jpg") and errors[0]["caption"] is None
    assert "cannot decode" in errors[0]["error"]
    got = {(r["path"], r["frame_time"]): r["caption"] for r in rows if r["error"] is None}
    assert got == expected
    shipped = EdgeCaptioner().manifest
    assert {r["model"] for r in rows} == {f"{shipped.name}@{shipped.version}"}
    assert list(rows[0])[:len(COLUMNS)] == list(COLUMNS)


def test_dataset_sources_and_option_errors(local_ray, recordings):
    import numpy as np

    images = sorted(str(p) for p in recordings.glob("scene00*.png"))
    from_paths = caption_images(ray.data.from_items([{"path": p} for p in images]), num_beams=2).take_all()
    with EdgeCaptioner() as captioner:
        assert {r["path"]: r["caption"] for r in from_paths} == {p: captioner.caption(p, num_beams=2).text
                                                               for p in images}
        import cv2

        arrays = ray.data.from_items([{"image": cv2.cvtColor(cv2.imread(p), cv2.COLOR_BGR2RGB), "tag": i}
                                      for i, p in enumerate(images[:4])])
        rows = caption_images(arrays).take_all()
        assert sorted((r["tag"], r["caption"]) for r in rows) == [(i, captioner.caption(p).text)
                                                                  for i, p in enumerate(images[:4])]
        assert "image" not in rows[0] and isinstance(rows[0]["score"], float) and np.isfinite(rows[0]["score"])
    with pytest.raises(OptionError, match="num_beams"):
        caption_images(images, num_beams=0)
    with pytest.raises(FileNotFoundError, match="no file matches"):
        caption_images(str(recordings / "*.nothing"))


def test_cli_batch_writes_parquet(tmp_path, recordings):
    import pyarrow.parquet as pq

    inputs = [str(recordings / "drive0.mp4"), str(recordings / "scene00[0-4].png"), str(recordings / "broken.jpg")]
    out = tmp_path / "captions"
    run = subprocess.run([sys.executable, "-m", "edge_caption.cli", "batch", *inputs, "--out", str(out),
                          "--fps", "2", "--json"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    table = pq.read_table(out).to_pandas()
    assert list(table.columns) == list(COLUMNS)
    assert summary["rows"] == len(table) == 6 + 5 + 1 and summary["errors"] == 1   # 3 s of video at 2 fps
    assert sorted(table[table.path.str.endswith(".mp4")].frame_time) == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    again = subprocess.run([sys.executable, "-m", "edge_caption.cli", "batch", *inputs, "--out", str(out)],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "is not empty" in again.stderr


def test_missing_extra_says_what_to_install(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    from edge_caption.errors import BackendUnavailableError
    from edge_caption.ray import _ray

    with pytest.raises(BackendUnavailableError, match=r"edge-caption\[ray\]"):
        _ray()



def test_batches_keep_one_schema_whatever_their_rows():
    """A batch of images only, or of failures only, writes the same Arrow types as any other."""
    import pandas as pd
    import pyarrow as pa

    from edge_caption.ray import _table

    failed = _table(pd.DataFrame({"path": ["a.jpg"], "frame_time": [None], "caption": [None], "score": [None],
                                  "model": ["m@1"], "error": ["cannot decode"], "tag": [3]}))
    fine = _table(pd.DataFrame({"path": ["v.mp4"], "frame_time": [0.5], "caption": ["a red circle"],
                                "score": [-0.2], "model": ["m@1"], "error": [None], "tag": [4]}))
    assert failed.schema == fine.schema
    assert failed.schema.field("frame_time").type == pa.float64() and failed.schema.field("error").type == pa.string()
    assert failed.column_names == [*COLUMNS, "tag"]
