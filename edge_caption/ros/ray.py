"""Many bags with Ray Data (extras `[ray,ros]`): one read task per bag streams its messages in batches,
the pool of captioning actors of `edge_caption.ray` captions them, rows as `batch` over bags writes.

    from edge_caption.ros.ray import caption_bags
    caption_bags(["drive1.mcap", "drive2.bag"], topics=["/front/image_raw"], fps=1.0).write_parquet("captions/")

A bag's reader yields `batch_size` frames at a time (a generator), so Ray Data's streaming executor
holds a few batches per bag in flight, never a whole bag. Bags must be readable at the same path on
every node.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..ray import READ_CPUS, READ_TASKS, CaptionActor, _ray
from .bag import open_bag

_NO_STAMP = -1      # in flight: an int column with nulls would come back from Arrow as float (ns lost)


class _BagRows:
    """One bag path in -> its frames out, `batch_size` rows per pandas batch (pixels carried raw, BGR)."""

    def __init__(self, topics: Sequence[str], fps: float | None, batch_size: int):
        self.topics, self.fps, self.batch_size = list(topics), fps, batch_size

    def __call__(self, batch: Any) -> Iterator[Any]:
        import pandas as pd

        for path in batch["path"]:
            rows: list[dict[str, Any]] = []
            with open_bag(str(path), self.topics) as bag:
                for item in bag.frames(self.fps):
                    frame = item.frame
                    rows.append({"path": item.bag, "frame_time": item.frame_time, "topic": item.topic,
                                 "stamp_ns": _NO_STAMP if item.stamp_ns is None else item.stamp_ns,
                                 "pixels": b"" if frame is None else frame.tobytes(),
                                 "height": 0 if frame is None else frame.shape[0],
                                 "width": 0 if frame is None else frame.shape[1], "error": item.error})
                    if len(rows) >= self.batch_size:
                        yield pd.DataFrame(rows)
                        rows = []
            if rows:
                yield pd.DataFrame(rows)


class BagCaptionActor(CaptionActor):
    """`CaptionActor`, with `stamp_ns` null again where a message had none."""

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa
        import pyarrow.compute as pc

        table = super().__call__(batch)
        stamps = table.column("stamp_ns").cast(pa.int64())
        stamps = pc.if_else(pc.less(stamps, 0), pa.scalar(None, pa.int64()), stamps)
        columns = ["path", "frame_time", "caption", "score", "model", "error", "topic"]
        return table.select(columns).append_column("stamp_ns", stamps)


def caption_bags(bags: Sequence[str | Path], bundle: str | Path | None = None, *, topics: Sequence[str] = (),
                 fps: float | None = 1.0, batch_size: int = 16, concurrency: int | tuple[int, int] | None = None,
                 num_gpus: float = 0, **decoding: Any):
    """Caption the image topics of many bags with a pool of Ray actors -> a lazy `ray.data.Dataset` with the
    columns `path` (the bag), `frame_time` (s from its first message), `caption`, `score`, `model`,
    `error`, `topic`, `stamp_ns`. Every bag and topic is checked here, before any work starts."""
    ray = _ray()
    from ..bundle import Bundle
    from ..captioner import default_bundle_path
    from ..options import DecodeOptions

    for path in bags:
        open_bag(path, topics).close()
    opened = Bundle.open(bundle if bundle is not None else default_bundle_path())
    DecodeOptions.from_mapping(opened.manifest.decoding).replace(**decoding)
    model = f"{opened.manifest.name}@{opened.manifest.version}"
    rows = ray.data.from_items([{"path": str(Path(p).resolve())} for p in bags]).map_batches(
        _BagRows(topics, fps or None, batch_size), batch_size=1, batch_format="pandas", num_cpus=READ_CPUS,
        compute=ray.data.TaskPoolStrategy(size=READ_TASKS))
    return rows.map_batches(BagCaptionActor, fn_constructor_kwargs={"bundle": str(opened.path.resolve()),
                                                                    "decoding": decoding, "model": model},
                            batch_size=batch_size, batch_format="pandas", concurrency=concurrency,
                            num_gpus=num_gpus or None)


def caption_bags_with_ray(bags: Sequence[str | Path], out: str, bundle: str | Path | None = None, *,
                          address: str = "local", bag_out: str | Path | None = None, **options: Any) -> dict:
    """`edge-caption batch BAG ... --ray-address ADDRESS`: Parquet files in `out` (a directory or s3://...),
    and with `bag_out` the captions MCAP, written here from the Parquet rows once Ray is done."""
    import logging

    import pyarrow as pa

    from .mcap_out import CaptionMcap

    ray = _ray()
    mcap = CaptionMcap(bag_out) if bag_out is not None else None      # a name in use is refused before any work
    ray.init(address=address, include_dashboard=False if address == "local" else None, logging_level="WARNING")
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    start = time.perf_counter()
    try:
        caption_bags(bags, bundle, **options).write_parquet(out)
        seconds = time.perf_counter() - start
        # Arrow, not pandas: an int64 column with nulls would turn into floats and lose the stamps' nanoseconds.
        refs = ray.data.read_parquet(out).select_columns(["topic", "stamp_ns", "caption", "error"]).to_arrow_refs()
        written = pa.concat_tables(ray.get(refs)).to_pylist()
    except BaseException:
        if mcap is not None:
            mcap.abort()
        raise
    finally:
        ray.shutdown()
    report = {"rows": len(written), "errors": sum(r["error"] is not None for r in written), "captions": 0,
              "seconds": seconds}
    if mcap is not None:
        done = sorted((r["stamp_ns"], r["topic"], r["caption"]) for r in written
                      if r["caption"] is not None and r["stamp_ns"] is not None)
        try:
            for stamp, topic, text in done:
                mcap.write(topic, stamp, text)
        except BaseException:
            mcap.abort()
            raise
        mcap.close()
        report["captions"] = len(done)
    return report
