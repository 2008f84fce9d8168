"""EdgeCaptioner: preprocess -> encode -> decode -> detokenize, over any backend."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable

import cv2
import numpy as np

from .backends import create_backend
from .backends.base import DevicePreprocessing
from .bundle import Bundle
from .decoding import decode
from .decoding.contract import DeviceLoopBackend
from .errors import BundleError, BundleNotFoundError, EdgeCaptionError, FrameError
from .options import DecodeOptions, check_names
from .preprocess import letterbox_box, preprocess, to_rgb_uint8
from .prompts import check_prompt
from .tokenizer import Detokenizer
from .types import Caption

DEFAULT_BUNDLE = Path(__file__).parent / "models" / "default.ecap"


def default_bundle_path() -> Path:
    if not (DEFAULT_BUNDLE / "manifest.json").is_file():
        raise BundleNotFoundError(
            f"the shipped default model is missing ({DEFAULT_BUNDLE}); reinstall edge-caption "
            "(pip install --force-reinstall edge-caption) or pass a bundle made by `edge-caption export`"
        )
    return DEFAULT_BUNDLE


def _plain(frame: Any) -> bool:
    """A uint8 [H,W,3] array: the frames a device preprocessor takes without a host conversion."""
    return isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3 \
        and frame.size > 0


def _maps(trace: np.ndarray | None, grid: tuple[int, int] | None, spec: Any = None,
          frame_size: tuple[int, int] | None = None) -> np.ndarray | None:
    """The attention trace as maps over the frame: the grid, or, when the frame was letterboxed, the
    grid resampled to the encoder's pixels and cut to the frame's part (the bars are not the frame)."""
    if trace is None or grid is None:
        return None
    maps = np.ascontiguousarray(trace.reshape(len(trace), *grid), dtype=np.float32)
    if frame_size is None or spec.fit != "letterbox":
        return maps
    top, left, nh, nw = letterbox_box(*frame_size, tuple(spec.size))
    h, w = spec.size
    if (nh, nw) == (h, w):          # a frame of the input's own aspect: no bars, the grid is the frame
        return maps
    full = [cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR) for m in maps]
    return np.ascontiguousarray(np.stack(full)[:, top:top + nh, left:left + nw]) if full else maps


class EdgeCaptioner:
    """Caption frames with an engine bundle.

    `engine`: a bundle directory made by `edge-caption export` (None: the shipped default model).
    `backend`: "auto" | "tensorrt" | "torch-cuda" | "onnxruntime"; `backend_name` and
    `backend_reason` say what "auto" chose and why. `threads`: CPU threads one call may use (None:
    every core; give each of several captioners sharing a machine its share). `cuda_graphs`: replay
    captured CUDA graphs on a GPU (torch-cuda, TensorRT); off only to debug. `device`: the GPU index
    (backend="torch-cuda" also takes "cpu": its programs and search on CPU tensors, as the tests run
    them without a GPU). Keyword arguments set
    decoding defaults (Hugging Face's names: num_beams, max_new_tokens, ...) over the bundle's own.
    """

    def __init__(self, engine: str | Path | None = None, *, backend: str = "auto", device: int | str = 0,
                 threads: int | None = None, cuda_graphs: bool = True, **decoding_defaults: Any):
        self.bundle = Bundle.open(engine if engine is not None else default_bundle_path())
        manifest = self.bundle.manifest
        check_prompt(manifest, decoding_defaults.pop("prompt", None))
        check_names(decoding_defaults)
        self.defaults = DecodeOptions.from_mapping(manifest.decoding).replace(**decoding_defaults)
        self._detokenizer = Detokenizer(self.bundle.file(manifest.tokenizer.file),
                                        manifest.tokenizer.clean_up_tokenization_spaces)
        self._backend, self.backend_reason = create_backend(self.bundle, backend, device=device, threads=threads,
                                                            cuda_graphs=cuda_graphs)
        self.backend_name = self._backend.name
        self._proven = False        # whether the graphs have run once as the manifest says

    @property
    def manifest(self):
        return self.bundle.manifest

    # ---- captioning ----------------------------------------------------------------------
    def caption(self, frame: Any, *, color: str = "bgr", return_attention: bool = False, **decoding: Any) -> Caption:
        """Caption one frame: an OpenCV BGR uint8 [H,W,3] array (or RGB with color="rgb", grayscale,
        BGRA/RGBA, a PIL image, or an image path).

        `return_attention=True`: for families that attend (show-attend-tell), `Caption.attention` is
        float32 [tokens, h, w], where each generated token looked over the frame (see
        `edge_caption.stream.overlay`): the encoder's grid, or where a letterbox bundle added bars,
        that grid at the encoder's pixels cut to the frame's part."""
        return self.caption_batch([frame], color=color, return_attention=return_attention, **decoding)[0]

    def caption_batch(self, frames: Iterable[Any], *, color: str = "bgr", return_attention: bool = False,
                      **decoding: Any) -> list[Caption]:
        """Caption several frames (each as `caption()` takes it) in one encode and one decode; one
        `Caption` per frame, in order. `return_attention` as for `caption()`. `prompt=` may name the
        prompt the bundle was exported with (e.g. Florence-2's "<CAPTION>"); another one is an OptionError."""
        check_prompt(self.manifest, decoding.pop("prompt", None))
        options = self.defaults.replace(**decoding)
        start = time.perf_counter()
        if isinstance(frames, np.ndarray) and frames.ndim < 4:
            raise FrameError(f"caption_batch() takes a list of frames, got one array of shape {frames.shape}; "
                             "use caption() for a single frame")
        frames = list(frames)
        if not frames:
            raise FrameError("caption_batch() got no frames; pass a non-empty list of frames")
        on_device = isinstance(self._backend, DevicePreprocessing)
        if on_device and color in ("bgr", "rgb") and all(_plain(f) for f in frames):
            # OpenCV frames go to the device as they are: uint8 travels, the device resizes and swaps
            pixels = self._backend.preprocess_frames(frames, color)
            return self._run(pixels, options, start, time.perf_counter(), return_attention,
                             [f.shape[:2] for f in frames])
        rgb = []
        for i, frame in enumerate(frames):
            try:
                rgb.append(to_rgb_uint8(frame, color=color))
            except FrameError as exc:
                raise type(exc)(f"frame {i}: {exc}") if len(frames) > 1 else exc
        pixels = (self._backend.preprocess_frames(rgb, "rgb") if on_device
                  else preprocess(rgb, self.manifest.preprocess))
        return self._run(pixels, options, start, time.perf_counter(), return_attention, [f.shape[:2] for f in rgb])

    def caption_pixels(self, pixel_values: np.ndarray, **decoding: Any) -> list[Caption]:
        """Caption already preprocessed float32 [B,3,H,W] pixel values (no resizing or normalising)."""
        check_prompt(self.manifest, decoding.pop("prompt", None))
        options = self.defaults.replace(**decoding)
        start = time.perf_counter()
        return self._run(self._check_pixels(pixel_values), options, start, start)

    def _check_pixels(self, pixel_values: Any) -> np.ndarray:
        h, w = self.manifest.preprocess.size
        expected = f"a float32 array [B,3,{h},{w}]"
        if not isinstance(pixel_values, np.ndarray):
            raise FrameError(f"caption_pixels() needs {expected}, got {type(pixel_values).__name__}; "
                             "use caption() for images")
        if pixel_values.ndim != 4 or pixel_values.shape[1:] != (3, h, w) or pixel_values.shape[0] == 0:
            raise FrameError(f"caption_pixels() needs {expected}, got shape {tuple(pixel_values.shape)}; "
                             "use caption() to resize and normalise images")
        if pixel_values.dtype != np.float32:
            if not np.issubdtype(pixel_values.dtype, np.floating):
                raise FrameError(f"caption_pixels() needs {expected}, got dtype {pixel_values.dtype}; "
                                 "use caption() for uint8 images")
            pixel_values = pixel_values.astype(np.float32)
        if not np.isfinite(pixel_values).all():
            raise FrameError("caption_pixels() got NaN or infinite values; check the preprocessing that made them")
        return np.ascontiguousarray(pixel_values)

    def _run(self, pixels: np.ndarray, options: DecodeOptions, start: float, preprocessed: float,
             return_attention: bool = False, frame_sizes: list | None = None) -> list[Caption]:
        grid = self.manifest.attention_grid
        trace = "attention" if return_attention and grid and "attention" in self.manifest.step_extras else None
        try:
            memory = self._backend.encode(pixels)
            encoded = time.perf_counter()
            hypotheses = decode(self._backend, self.manifest, memory, options, trace=trace)
        except (EdgeCaptionError, MemoryError):
            raise
        except Exception as exc:
            if self._proven:
                raise
            # a manifest that passed every check but disagrees with its own graphs (an edited size,
            # a renamed tensor) fails here, on the first run: that is a bundle problem, said as one
            raise BundleError(f"bundle {self.bundle.path}: its graphs failed on their first run as its manifest "
                              f"describes them ({type(exc).__name__}: {str(exc).strip()[:300]}); if manifest.json "
                              "was edited, restore it or re-export the bundle with `edge-caption export`") from exc
        self._proven = True
        decoded = time.perf_counter()
        # a GPU backend's encode returns before the GPU is done: its own events say where the time went
        device_timings = self._backend.timings() if isinstance(self._backend, DeviceLoopBackend) else None
        timings = {
            "preprocess": (preprocessed - start) * 1e3,
            "encode": (encoded - preprocessed) * 1e3,
            "decode": (decoded - encoded) * 1e3,
            **(device_timings or {}),
        }
        captions = []
        for i, per_image in enumerate(hypotheses):
            size = frame_sizes[i] if frame_sizes else None
            made = [Caption(self._detokenizer.decode(h.token_ids), h.token_ids, h.score,
                            attention=_maps(h.trace, grid, self.manifest.preprocess, size)) for h in per_image]
            timings_now = {**timings, "total": (time.perf_counter() - start) * 1e3}
            captions.append(Caption(made[0].text, made[0].token_ids, made[0].score, timings_now, tuple(made[1:]),
                                    made[0].attention))
        return captions

    # ---- streaming -----------------------------------------------------------------------
    def stream(self, source: Any, **stream_options: Any):
        """Caption a live source (or several) -> `CaptionStream`, an iterator of `CaptionEvent`s.

        `source`: a camera index, "csi://N", "rtsp://...", "http(s)://...", a video file, a GStreamer
        pipeline ending in appsink, a ROS bag "rosbag:///path/drive.mcap?topic=/cam/image_raw[&rate=1]"
        (extra [ros]), or an iterable of frames; a list of sources is several, batched together. Options: every_n, max_rate, gate, emit, reconnect, max_retries, backoff,
        return_attention (see `edge_caption.stream.StreamOptions`)."""
        from .errors import OptionError
        from .stream import CaptionStream, StreamOptions, split_sources

        unknown = sorted(set(stream_options) - set(StreamOptions.names()))
        if unknown:
            raise OptionError(f"unknown stream option(s) {', '.join(unknown)}; valid: {', '.join(StreamOptions.names())}")
        return CaptionStream(self, split_sources(source), StreamOptions(**stream_options))

    # ---- lifetime ------------------------------------------------------------------------
    def close(self) -> None:
        self._backend.close()

    def __enter__(self) -> "EdgeCaptioner":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"EdgeCaptioner({str(self.bundle.path)!r}, backend={self.backend_name!r}, "
                f"model={self.manifest.name}@{self.manifest.version})")
