"""Frame -> `pixel_values`, exactly as the bundle's `Preprocess` spec says.

Models are trained with Hugging Face image processors, which (without torchvision) resize through
Pillow. To give the encoder the same pixels at run time without Pillow or torch, `resize_uint8`
re-implements Pillow 13's 8-bit resampling (`libImaging/Resample.c`): the same per-axis filter
coefficients, quantised to 22-bit fixed point, a rounding back to uint8 after each pass, and the
same pass order. Each pass is a few float32 matmuls over bands of the (cached) banded weight matrix.
"""
from __future__ import annotations

import functools
import math
import os
from typing import Any

import cv2
import numpy as np

from .errors import FrameError, ImageNotFoundError
from .manifest import RESIZE_MODES  # noqa: F401  (declared with the rest of the manifest; imported from here too)

_EXPECTED = "a uint8 array [H,W,3] (BGR, as OpenCV gives), [H,W], [H,W,1], [H,W,4], a PIL image or an image path"
_PRECISION = 1 << 22          # Pillow's PRECISION_BITS = 32 - 8 - 2
_BAND = 16                    # output rows per matmul: wide enough for BLAS, narrow enough to skip zeros


# ---- frames -----------------------------------------------------------------------------------
def to_rgb_uint8(frame: Any, color: str = "bgr") -> np.ndarray:
    """Any accepted frame -> contiguous uint8 [H,W,3] RGB. `color` is the array's channel order."""
    if color not in ("bgr", "rgb"):
        raise FrameError(f"color must be 'bgr' or 'rgb', got {color!r}")
    if frame is None:
        raise FrameError(f"got None instead of a frame (did the camera or cv2.imread fail?); expected {_EXPECTED}")
    if isinstance(frame, (str, os.PathLike)):
        return _read_image(os.fspath(frame))
    if _is_pil(frame):
        return _pil_to_rgb(frame)
    if not isinstance(frame, np.ndarray):
        raise FrameError(f"got a {type(frame).__module__}.{type(frame).__qualname__}; expected {_EXPECTED}")
    if frame.size == 0:
        raise FrameError(f"got an empty array of shape {frame.shape}; expected {_EXPECTED}")
    if frame.dtype != np.uint8:
        hint = (" Convert it first, e.g. (x * 255).clip(0, 255).astype(np.uint8) for [0,1] floats, or pass "
                "already-normalised model input to caption_pixels()." if frame.dtype.kind == "f" else "")
        raise FrameError(f"got an array of dtype {frame.dtype}; expected uint8.{hint}")
    if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 1):
        return np.ascontiguousarray(np.repeat(frame.reshape(frame.shape[:2] + (1,)), 3, axis=2))
    if frame.ndim != 3:
        raise FrameError(f"got an array with {frame.ndim} dimensions, shape {frame.shape}; expected {_EXPECTED}")
    channels = frame.shape[2]
    if channels == 3:
        frame = np.ascontiguousarray(frame)
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if color == "bgr" else frame
    if channels == 4:
        rgb = frame[..., 2::-1] if color == "bgr" else frame[..., :3]
        return _over_white(rgb, frame[..., 3:4])
    raise FrameError(f"got an array with {channels} channels, shape {frame.shape}; expected 1, 3 or 4 channels")


def _over_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    # Hugging Face's convert_to_rgb composites transparency onto white; match it, not a plain drop.
    if alpha.min() == 255:
        return np.ascontiguousarray(rgb)
    a = alpha.astype(np.float64) / 255
    return np.round(a * rgb + (1 - a) * 255).astype(np.uint8)


def _is_pil(obj: Any) -> bool:
    # Duck-typed so that PIL is imported only when the caller already uses it.
    return type(obj).__module__.startswith("PIL.") and hasattr(obj, "getbands") and hasattr(obj, "convert")


def _pil_to_rgb(image: Any) -> np.ndarray:
    if image.width == 0 or image.height == 0:
        raise FrameError(f"got an empty PIL image of size {image.size}; expected {_EXPECTED}")
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        rgba = np.asarray(image.convert("RGBA"))
        return _over_white(rgba[..., :3], rgba[..., 3:4])
    return np.ascontiguousarray(np.asarray(image.convert("RGB")))


def _read_image(path: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise ImageNotFoundError(f"image file not found: {path!r}; check the path")
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise FrameError(f"cannot decode {path!r} as an image (corrupt, or a format this OpenCV cannot read)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# ---- Pillow-equivalent resampling -------------------------------------------------------------
def _filter(mode: str):
    def box(x): return 1.0 if -0.5 < x <= 0.5 else 0.0
    def bilinear(x): return max(0.0, 1.0 - abs(x))
    def hamming(x):
        x = abs(x)
        if x == 0.0:
            return 1.0
        if x >= 1.0:
            return 0.0
        x *= math.pi
        # Pillow writes 0.54f/0.46f: float32 constants widened to double.
        return math.sin(x) / x * (float(np.float32(0.54)) + float(np.float32(0.46)) * math.cos(x))
    def bicubic(x, a=-0.5):
        x = abs(x)
        if x < 1.0:
            return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
        return (((x - 5) * x + 8) * x - 4) * a if x < 2.0 else 0.0
    def sinc(x):
        return 1.0 if x == 0.0 else math.sin(x * math.pi) / (x * math.pi)
    def lanczos(x): return sinc(x) * sinc(x / 3) if -3.0 <= x < 3.0 else 0.0
    table = {"box": (box, 0.5), "bilinear": (bilinear, 1.0), "hamming": (hamming, 1.0),
             "bicubic": (bicubic, 2.0), "lanczos": (lanczos, 3.0)}
    if mode not in table:
        raise FrameError(f"unknown resize mode {mode!r}; expected one of {', '.join(RESIZE_MODES)}")
    return table[mode]


@functools.lru_cache(maxsize=64)
def _bands(n_in: int, n_out: int, mode: str) -> tuple[int, tuple[tuple[int, int, int, int, np.ndarray], ...]]:
    """Pillow's precompute_coeffs + normalize_coeffs_8bpc, cut into bands of `_BAND` outputs.

    Each integer weight is split as hi * 2**shift + lo so that two float32 products sum exact
    integers below 2**24: the result is bit-identical to Pillow's int32 arithmetic without paying
    for a float64 copy of the frame."""
    fn, support = _filter(mode)
    scale = n_in / n_out
    filterscale = max(scale, 1.0)
    support *= filterscale
    rows = []
    for xx in range(n_out):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), n_in)
        w = np.array([fn((x - center + 0.5) / filterscale) for x in range(xmin, xmax)])
        if w.sum() != 0.0:
            w = w / w.sum()
        rows.append((xmin, np.where(w < 0, np.trunc(w * _PRECISION - 0.5), np.trunc(w * _PRECISION + 0.5))))
    taps = max(len(q) for _, q in rows)
    shift = next((b for b in range(11, 6, -1) if taps * (1 << (b - 1)) * 255 < 1 << 24), 7)
    bands = []
    for o0 in range(0, n_out, _BAND):
        part = rows[o0:o0 + _BAND]
        lo = min(r[0] for r in part)
        hi = max(r[0] + len(r[1]) for r in part)
        wb = np.zeros((2 * len(part), hi - lo), np.float32)
        for i, (xmin, q) in enumerate(part):
            high = np.round(q / (1 << shift))
            wb[i, xmin - lo:xmin - lo + len(q)] = high
            wb[len(part) + i, xmin - lo:xmin - lo + len(q)] = q - high * (1 << shift)
        bands.append((o0, o0 + len(part), lo, hi, wb))
    return shift, tuple(bands)


def _pass(x: np.ndarray, n_out: int, mode: str) -> np.ndarray:
    """Resample axis 0 of uint8 [n_in, M] -> uint8 [n_out, M], rounding like Pillow's clip8."""
    shift, bands = _bands(x.shape[0], n_out, mode)
    xf = x.astype(np.float32)
    acc = np.empty((n_out, x.shape[1]), np.int32)
    for o0, o1, lo, hi, wb in bands:
        s = (wb @ xf[lo:hi]).astype(np.int32)
        n = o1 - o0
        acc[o0:o1] = (s[:n] << shift) + s[n:]
    acc += _PRECISION >> 1
    acc >>= 22
    np.clip(acc, 0, 255, out=acc)
    return acc.astype(np.uint8)


def _vertical(img: np.ndarray, oh: int, mode: str) -> np.ndarray:
    h, w, c = img.shape
    return _pass(img.reshape(h, w * c), oh, mode).reshape(oh, w, c)


def _horizontal(img: np.ndarray, ow: int, mode: str) -> np.ndarray:
    h, w, c = img.shape
    t = cv2.transpose(img).reshape(w, h * c)     # put the resampled axis first, contiguous
    return cv2.transpose(_pass(t, ow, mode).reshape(ow, h, c))


def resize_uint8(img: np.ndarray, size: tuple[int, int], mode: str = "bilinear") -> np.ndarray:
    """uint8 [H,W,3] -> [h,w,3] as `PIL.Image.resize((w, h), mode)` gives for an RGB image."""
    oh, ow = size
    h, w = img.shape[:2]
    if (oh, ow) == (h, w):
        return img
    if mode == "nearest":
        # Pillow's affine nearest transform samples the pixel under each output centre.
        ys = np.minimum(((np.arange(oh) + 0.5) * (h / oh)).astype(np.intp), h - 1)
        xs = np.minimum(((np.arange(ow) + 0.5) * (w / ow)).astype(np.intp), w - 1)
        return np.ascontiguousarray(img[ys][:, xs])
    # Pillow 13 (python-pillow/Pillow#9549) runs the vertical pass first when the height shrinks
    # by more than twice as many pixels as the width; the order changes the rounding in between.
    vertical_first = oh < h and (h - oh) > 2 * (w - ow)
    if vertical_first:
        img = _vertical(img, oh, mode)
        return _horizontal(img, ow, mode) if ow != w else img
    if ow != w:
        img = _horizontal(img, ow, mode)
    return _vertical(img, oh, mode) if oh != h else img


# ---- the whole spec ---------------------------------------------------------------------------
def _shortest_edge_size(h: int, w: int, edge: int) -> tuple[int, int]:
    # transformers' get_resize_output_image_size(default_to_square=False): int() truncates.
    if w <= h:
        return int(edge * h / w), edge
    return edge, int(edge * w / h)


def _center_crop(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """transformers' center_crop: offsets floor((in - out) / 2), zero padding where too small."""
    ch, cw = size
    h, w = img.shape[:2]
    if ch > h or cw > w:
        nh, nw = max(ch, h), max(cw, w)
        padded = np.zeros((nh, nw, img.shape[2]), img.dtype)
        top, left = math.ceil((nh - h) / 2), math.ceil((nw - w) / 2)
        padded[top:top + h, left:left + w] = img
        img, h, w = padded, nh, nw
    top, left = (h - ch) // 2, (w - cw) // 2
    return img[top:top + ch, left:left + cw]


@functools.lru_cache(maxsize=16)
def _lut(rescale: float, mean: tuple, std: tuple) -> np.ndarray:
    # The same arithmetic as transformers' rescale (float64, then float32) and normalize (float32),
    # done once for the 256 possible values of each channel.
    v = (np.arange(256, dtype=np.float64) * rescale).astype(np.float32)
    m, s = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    return np.ascontiguousarray(((v[None, :] - m[:, None]) / s[:, None]).astype(np.float32))


def letterbox_box(h: int, w: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, left, height, width) of an [h,w] frame scaled into `size` whole, aspect kept, centred."""
    oh, ow = size
    scale = min(oh / h, ow / w)
    nh, nw = min(oh, max(1, round(h * scale))), min(ow, max(1, round(w * scale)))
    return (oh - nh) // 2, (ow - nw) // 2, nh, nw


def _letterbox(img: np.ndarray, spec: Any) -> np.ndarray:
    top, left, nh, nw = letterbox_box(*img.shape[:2], tuple(spec.size))
    canvas = np.empty((*spec.size, 3), np.uint8)
    canvas[:] = np.asarray(spec.fill, np.uint8)
    canvas[top:top + nh, left:left + nw] = resize_uint8(img, (nh, nw), spec.resize)
    return canvas


def fit_uint8(rgb: np.ndarray, spec: Any) -> np.ndarray:
    """The spec's geometry alone: uint8 RGB [H,W,3] -> uint8 RGB [h,w,3] at the encoder's size
    (resize, or letterbox, then any center crop), before the channel order and normalisation."""
    img = rgb
    if spec.fit == "letterbox":
        return _letterbox(img, spec)
    if spec.shortest_edge:
        img = resize_uint8(img, _shortest_edge_size(*img.shape[:2], spec.shortest_edge), spec.resize)
    elif spec.resize_to:
        img = resize_uint8(img, tuple(spec.resize_to), spec.resize)
    elif not spec.center_crop:
        img = resize_uint8(img, tuple(spec.size), spec.resize)
    if spec.center_crop:
        img = _center_crop(img, tuple(spec.size))
    return img


def preprocess_one(rgb: np.ndarray, spec: Any, out: np.ndarray | None = None) -> np.ndarray:
    """One uint8 RGB [H,W,3] frame -> float32 [3,h,w] pixel values."""
    img = fit_uint8(rgb, spec)
    if spec.color == "bgr":
        img = img[..., ::-1]
    lut = _lut(float(spec.rescale), tuple(spec.mean), tuple(spec.std))
    h, w = img.shape[:2]
    if out is None:
        out = np.empty((3, h, w), np.float32)
    for c in range(3):
        np.take(lut[c], img[:, :, c], out=out[c])
    return out


def preprocess(frames_rgb: list[np.ndarray], spec: Any) -> np.ndarray:
    """RGB uint8 frames (from `to_rgb_uint8`) -> float32 [B,3,H,W], as the model's HF processor gives."""
    h, w = spec.size
    batch = np.empty((len(frames_rgb), 3, h, w), np.float32)
    for i, frame in enumerate(frames_rgb):
        preprocess_one(frame, spec, out=batch[i])
    return batch
