"""Caption a fleet's recordings with Ray Data (extra `[ray]`): images and videos in, one row per frame out.

    from edge_caption.ray import caption_images
    ds = caption_images("recordings/", fps=1.0, concurrency=4)      # a lazy ray.data.Dataset
    ds.write_parquet("captions/")

Each actor of the pool holds one EdgeCaptioner and captions a batch with one `caption_batch`.
Ray restarts an actor that dies and re-runs its batch, so every input row comes out exactly once;
an image or video that cannot be read becomes a row with an `error`, never a failed job.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import EdgeCaptionError, missing_extra

READ_CPUS = 0
READ_TASKS = 2
COLUMNS = ("path", "frame_time", "caption", "score", "model", "error")


def _types() -> dict[str, Any]:
    import pyarrow as pa

    return {"path": pa.string(), "frame_time": pa.float64(), "caption": pa.string(), "score": pa.float64(),
            "model": pa.string(), "error": pa.string()}


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise missing_extra("ray[data]", "ray") from None
    return ray


class _FileFrames:
    """One input file -> its rows: one per image, one per sampled video frame (pixels carried raw)."""

    def __init__(self, fps: float | None):
        self.fps = fps

    def __call__(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        from .frames import is_video, video_frames

        path = str(row["path"])
        if not is_video(path):
            # The actor reads images itself: a path is cheaper to ship than pixels.
            return [{"path": path, "frame_time": None, "pixels": b"", "height": 0, "width": 0, "error": None}]
        rows = []
        try:
            for t, frame in video_frames(path, self.fps):
                h, w = frame.shape[:2]
                rows.append({"path": path, "frame_time": t, "pixels": frame.tobytes(), "height": h, "width": w,
                             "error": None})
        except EdgeCaptionError as exc:
            rows.append({"path": path, "frame_time": None, "pixels": b"", "height": 0, "width": 0,
                         "error": str(exc)})
        return rows


class CaptionActor:
    """One EdgeCaptioner per Ray actor; a batch (pandas) in, the same rows with captions out."""

    def __init__(self, bundle: str | None, decoding: dict[str, Any], model: str):
        import ray

        from .captioner import EdgeCaptioner

        # The CPUs Ray gave this actor, not the machine's: actors sharing a node would otherwise
        # each start a thread per core and spend their time waiting on each other.
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 0)
        self.captioner = EdgeCaptioner(bundle, threads=max(1, int(cpus)) if cpus else None, **decoding)
        self.model = model

    def _rgb(self, row: Any) -> np.ndarray:
        import cv2

        from .preprocess import to_rgb_uint8

        if "image" in row and row["image"] is not None:       # ray.data.read_images gives RGB
            return to_rgb_uint8(np.asarray(row["image"]), color="rgb")
        pixels = row.get("pixels", b"")
        if pixels is not None and len(pixels):
            bgr = np.frombuffer(pixels, dtype=np.uint8).reshape(int(row["height"]), int(row["width"]), 3)
            return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return to_rgb_uint8(str(row["path"]))

    def __call__(self, batch: Any) -> Any:
        n = len(batch)
        captions: list[Any] = [None] * n
        scores: list[Any] = [None] * n
        errors = list(batch["error"]) if "error" in batch else [None] * n
        frames, where = [], []
        for i, row in enumerate(batch.to_dict("records")):
            if isinstance(errors[i], str):      # not None, NaN or pd.NA (pandas 3): pandas' missing values
                continue
            errors[i] = None
            try:
                frames.append(self._rgb(row))
                where.append(i)
            except (EdgeCaptionError, FileNotFoundError, ValueError) as exc:
                errors[i] = str(exc)
        if frames:
            try:
                made = self.captioner.caption_batch(frames, color="rgb")
            except EdgeCaptionError:
                made = [self._one(frame) for frame in frames]    # find which frame it was
            for i, caption in zip(where, made):
                if isinstance(caption, Exception):
                    errors[i] = str(caption)
                else:
                    captions[i], scores[i] = caption.text, float(caption.score)
        out = batch.drop(columns=[c for c in ("pixels", "height", "width", "image") if c in batch])
        out["caption"], out["score"], out["model"], out["error"] = captions, scores, self.model, errors
        return _table(out)

    def _one(self, frame: np.ndarray) -> Any:
        try:
            return self.captioner.caption(frame, color="rgb")
        except EdgeCaptionError as exc:
            return exc


def _expand(paths: Any, fps: float | None) -> Any:
    # No CPU reserved: with whole CPUs the captioning actors can hold every CPU of a small machine and
    # starve the reads that feed them (Ray Data then waits forever). But zero-CPU tasks are not limited
    # by CPUs at all, so cap them: uncapped, Ray started 80+ worker processes on 2 cores and captioned
    # at 2 frames/s.
    ray = _ray()
    return paths.flat_map(_FileFrames(fps), num_cpus=READ_CPUS, compute=ray.data.TaskPoolStrategy(size=READ_TASKS))


def _table(frame: Any) -> Any:
    """Our columns with fixed Arrow types, then the caller's: a batch whose rows all failed (or all
    came from images) must not write `error` (or `frame_time`) as Arrow's null type, or the Parquet
    files of one run disagree on their schema and cannot be read as one table."""
    import pyarrow as pa

    types = _types()
    ours = [(name, types[name]) for name in COLUMNS if name in frame]
    arrays = [pa.array(frame[name], type=kind, from_pandas=True) for name, kind in ours]
    rest = [c for c in frame.columns if c not in types]
    table = pa.table(arrays, names=[name for name, _ in ours])
    if rest:
        extra = pa.Table.from_pandas(frame[rest], preserve_index=False)
        for name in rest:
            table = table.append_column(name, extra[name])
    return table


def caption_images(source: Any, bundle: str | Path | None = None, *, fps: float | None = 1.0, batch_size: int = 16,
                   concurrency: int | tuple[int, int] | None = None, num_gpus: float = 0, **decoding: Any):
    """Caption images and video frames with a pool of Ray actors -> a lazy `ray.data.Dataset`.

    `source`: a Ray Dataset with an `image` column (RGB arrays, as `ray.data.read_images` gives) or
    a `path` column, a directory, a glob, a path, or a list of them. Videos become one frame every
    1/`fps` seconds (every frame with fps=None). Rows: `path`, `frame_time` (seconds into the
    video; None for images), `caption`, `score`, `model` (`name@version`), `error` (None, or why the
    row has no caption); a Dataset source keeps its own columns, less `image`.

    `bundle` must be readable at the same path on every node (None: the shipped model).
    `concurrency`: actors in the pool (an int, or (min, max) to autoscale); `num_gpus` per actor.
    Decoding options (num_beams, max_new_tokens, ...) are checked here, before any work starts."""
    ray = _ray()
    from .bundle import Bundle
    from .captioner import default_bundle_path
    from .options import DecodeOptions

    opened = Bundle.open(bundle if bundle is not None else default_bundle_path())
    DecodeOptions.from_mapping(opened.manifest.decoding).replace(**decoding)
    model = f"{opened.manifest.name}@{opened.manifest.version}"
    if fps is not None and fps <= 0:
        from .errors import OptionError

        raise OptionError(f"fps must be > 0 (or None for every frame), got {fps}")
    if isinstance(source, ray.data.Dataset):
        columns = source.columns() or []
        if "image" not in columns and "path" not in columns:
            raise ValueError(f"the dataset needs an 'image' or a 'path' column; it has {columns}")
        rows = source if "image" in columns else _expand(source, fps)
    else:
        from .frames import expand_inputs

        rows = _expand(ray.data.from_items([{"path": p} for p in expand_inputs(source)]), fps)
    return rows.map_batches(CaptionActor, fn_constructor_kwargs={"bundle": str(opened.path.resolve()),
                                                                 "decoding": decoding, "model": model},
                            batch_size=batch_size, batch_format="pandas", concurrency=concurrency,
                            num_gpus=num_gpus or None)
