"""Caption ROS bags in this process, streaming: messages in, Parquet rows (and MCAP captions) out.

One bag message at a time is read and converted, `batch_size` frames are captioned together, their
rows go to a Parquet row group and their captions to the MCAP file, and nothing else is kept, so a
bag of any length runs in bounded memory. The Ray Data path (`edge_caption.ros.ray`) is for many bags
over many cores or nodes; both give the same rows.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

from ..errors import FrameError
from ..progress import Progress
from .bag import BagFrame, open_bag

ROW_GROUP = 1024        # rows per Parquet row group: a few hundred KB of text, written as soon as full


def schema():
    """The Parquet columns of `batch` over bags: the Ray path's, plus `topic` and `stamp_ns`."""
    import pyarrow as pa

    return pa.schema([("path", pa.string()), ("frame_time", pa.float64()), ("caption", pa.string()),
                      ("score", pa.float64()), ("model", pa.string()), ("error", pa.string()),
                      ("topic", pa.string()), ("stamp_ns", pa.int64())])


def caption_frames(captioner: Any, items: list[BagFrame]) -> list[tuple[str | None, float | None, str | None]]:
    """(caption, score, error) per item: one `caption_batch` for the frames, each bad one reported alone."""
    results: list[tuple[str | None, float | None, str | None]] = [(None, None, item.error) for item in items]
    where = [i for i, item in enumerate(items) if item.frame is not None]
    frames = [items[i].frame for i in where]
    if not frames:
        return results
    try:
        made: list[Any] = captioner.caption_batch(frames)
    except FrameError:
        made = []
        for frame in frames:
            try:
                made.append(captioner.caption(frame))
            except FrameError as exc:
                made.append(exc)
    for i, caption in zip(where, made):
        if isinstance(caption, Exception):
            results[i] = (None, None, str(caption))
        else:
            results[i] = (caption.text, float(caption.score), None)
    return results


def caption_bags(bags: Sequence[str | Path], out: str | Path, bundle: str | Path | None = None, *,
                 topics: Sequence[str] = (), fps: float | None = 1.0, batch_size: int = 16,
                 bag_out: str | Path | None = None, progress: bool = True, backend: str = "auto",
                 **decoding: Any) -> dict[str, Any]:
    """Caption the image topics of `bags` (all image topics when `topics` is empty) to Parquet files in
    `out`, one message every 1/`fps` s of message time per topic (fps=None or 0: every message), and
    with `bag_out` the captions to that MCAP file. Returns {"rows", "errors", "captions", "seconds"}."""
    from ..captioner import EdgeCaptioner
    from . import require

    require("pyarrow")
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .mcap_out import CaptionMcap

    out = Path(out)
    opened = [open_bag(path, topics) for path in bags]      # every bag and topic checked before any work
    start = time.perf_counter()
    counts = {"rows": 0, "errors": 0, "captions": 0, "flushed": 0}
    captions_out = None
    writer = None
    try:
        captions_out = CaptionMcap(bag_out) if bag_out is not None else None
        captioner = EdgeCaptioner(bundle, backend=backend, **decoding)
        model = f"{captioner.manifest.name}@{captioner.manifest.version}"
        out.mkdir(parents=True, exist_ok=True)
        columns: dict[str, list] = {name: [] for name in schema().names}
        writer = pq.ParquetWriter(str(out / "captions-00000.parquet"), schema())
        bar = Progress(sum(b.message_count for b in opened), "captioning bag messages", enabled=progress)

        def flush(force: bool = False) -> None:
            # The first batch's rows are written at once: an output that cannot be written fails now, not after
            # a thousand frames, and the writer's one-time buffers are allocated at the start, not mid-run.
            if columns["path"] and (force or len(columns["path"]) >= ROW_GROUP or not counts["flushed"]):
                counts["flushed"] = 1
                writer.write_table(pa.table(columns, schema=schema()))
                for values in columns.values():
                    values.clear()

        def run(items: list[BagFrame]) -> None:
            for item, (text, score, error) in zip(items, caption_frames(captioner, items)):
                for name, value in (("path", item.bag), ("frame_time", item.frame_time), ("caption", text),
                                    ("score", score), ("model", model), ("error", error), ("topic", item.topic),
                                    ("stamp_ns", item.stamp_ns)):
                    columns[name].append(value)
                counts["rows"] += 1
                counts["errors"] += error is not None
                if text is not None and captions_out is not None and item.stamp_ns is not None:
                    captions_out.write(item.topic, item.stamp_ns, text)
                    counts["captions"] += 1
            flush()

        with captioner:
            for bag in opened:
                pending: list[BagFrame] = []
                for item in bag.frames(fps, on_message=bar.advance):
                    pending.append(item)
                    if len(pending) >= batch_size:
                        run(pending)
                        pending = []
                if pending:
                    run(pending)
        flush(force=True)
        bar.close()
        writer.close()
        writer = None
        if captions_out is not None:
            captions_out.close()
            captions_out = None
    finally:
        for bag in opened:
            bag.close()
        if writer is not None:
            writer.close()
        if captions_out is not None:
            captions_out.abort()
    counts.pop("flushed")
    return {**counts, "seconds": time.perf_counter() - start}
