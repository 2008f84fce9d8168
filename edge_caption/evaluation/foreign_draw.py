"""Pixels of the foreign evaluation set: shapes drawn with Pillow's ImageDraw, backgrounds (flat colours,
gradients, photo textures from the samples inside scikit-image's wheel) and a camera's degradations.

None of this is the training generator's code (scenes.py draws with OpenCV and never comes here), so a model
scored on these frames is scored on drawings it never trained on. Evaluation side only: training code must
never import this module (tests/test_foreign_isolation.py checks that). Needs the `[eval]` extra
(Pillow, scikit-image); images are RGB float32 [H,W,3] in 0..255 until `finish` makes them BGR uint8.
"""
from __future__ import annotations

import colorsys
import io
import math
from functools import lru_cache

import numpy as np

from ..errors import missing_extra

SUPERSAMPLE = 4      # ImageDraw has no anti-aliasing: draw masks 4x larger, then average down
# Photo textures that ship inside scikit-image's wheel (the other samples need a download). Grey ones are tinted.
TEXTURES = ("brick", "grass", "gravel", "coffee", "moon", "page")
PLAIN_TEXTURES = ("brick", "grass", "gravel")   # nothing shape-like in them: fit for frames that must be empty


def require() -> None:
    """Raise the error that names the pip line when Pillow or scikit-image is missing."""
    for module, package in (("PIL", "Pillow"), ("skimage", "scikit-image")):
        try:
            __import__(module)
        except ImportError:
            raise missing_extra(package, "eval") from None


# ---- shapes ----------------------------------------------------------------------------------
def outline(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    """Polygon vertices (pixels) of a shape whose half-width across is `r`, turned by `angle` degrees.

    A square has its corners on the circle of radius r (axis-aligned at angle 0), a diamond's diagonals
    are r and 0.77 r (ratio 1.3) with the long one vertical at 0, a triangle is equilateral pointing up,
    a star has five points with the inner radius 0.4 r."""
    if shape == "square":
        angles, radii = [45, 135, 225, 315], [r] * 4
    elif shape == "diamond":
        angles, radii = [90, 180, 270, 0], [r, r / 1.3, r, r / 1.3]
    elif shape == "triangle":
        angles, radii = [-90, 30, 150], [r] * 3
    elif shape == "star":
        angles = [i * 36 - 90 for i in range(10)]
        radii = [r if i % 2 == 0 else 0.4 * r for i in range(10)]
    else:
        raise ValueError(f"{shape!r} has no polygon (a circle is an ellipse)")
    turn = math.radians(angle)
    return [(cx + rad * math.cos(math.radians(a) + turn), cy + rad * math.sin(math.radians(a) + turn))
            for a, rad in zip(angles, radii)]


def shape_mask(shape: str, size: tuple[int, int], center: tuple[float, float], r: float, angle: float,
               stroke: float | None = None) -> np.ndarray:
    """Coverage (float32 [H,W] in 0..1) of a filled shape, or of its outline `stroke` pixels wide."""
    from PIL import Image, ImageDraw

    h, w = size
    k = SUPERSAMPLE
    mask = Image.new("L", (w * k, h * k), 0)
    draw = ImageDraw.Draw(mask)
    cx, cy, rr = center[0] * k, center[1] * k, r * k
    width = None if stroke is None else max(1, int(round(stroke * k)))
    if shape == "circle":
        box = [cx - rr, cy - rr, cx + rr, cy + rr]
        if width is None:
            draw.ellipse(box, fill=255)
        else:
            draw.ellipse(box, outline=255, width=width)
    else:
        points = outline(shape, cx, cy, rr, angle)
        if width is None:
            draw.polygon(points, fill=255)
        else:
            # a closed line with rounded joints: ImageDraw's polygon outline leaves notches at sharp corners
            draw.line(points + points[:2], fill=255, width=width, joint="curve")
    return np.asarray(mask.reduce(k), dtype=np.float32) / 255.0


def paint(img: np.ndarray, mask: np.ndarray, rgb: tuple[float, float, float]) -> None:
    """Composite a colour through a coverage mask, in place."""
    img *= 1.0 - mask[..., None]
    img += mask[..., None] * np.asarray(rgb, np.float32)


def object_color(base_bgr: tuple[int, int, int], rng: np.random.Generator) -> tuple[float, float, float]:
    """An RGB shade of a named colour: hue within 6 degrees, saturation and brightness varied."""
    b, g, r = (c / 255.0 for c in base_bgr)
    hue, sat, val = colorsys.rgb_to_hsv(r, g, b)
    hue = (hue + rng.uniform(-6, 6) / 360.0) % 1.0
    sat = float(np.clip(sat * rng.uniform(0.8, 1.1), 0.55, 1.0))
    val = float(np.clip(val * rng.uniform(0.8, 1.1), 0.45, 1.0))
    return tuple(255.0 * c for c in colorsys.hsv_to_rgb(hue, sat, val))


# ---- backgrounds -----------------------------------------------------------------------------
def muted(rng: np.random.Generator, *, saturation: float = 0.3) -> np.ndarray:
    """A colour no grammar word names: low saturation, any hue and brightness; RGB float32."""
    rgb = colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0, saturation), rng.uniform(0.12, 0.95))
    return np.asarray(rgb, np.float32) * 255.0


def gradient(rng: np.random.Generator, size: tuple[int, int], *, radial: bool) -> np.ndarray:
    """Two muted colours blended linearly along a random direction, or radially from a random point."""
    h, w = size
    a, b = muted(rng), muted(rng)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    if radial:
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        t = np.hypot(xs - cx, ys - cy) / max(1.0, math.hypot(w, h) * rng.uniform(0.4, 0.9))
    else:
        turn = rng.uniform(0, 2 * math.pi)
        t = (math.cos(turn) * xs + math.sin(turn) * ys) / max(1.0, abs(math.cos(turn)) * w + abs(math.sin(turn)) * h)
        t -= t.min()
    t = np.clip(t, 0, 1)[..., None]
    return a * (1 - t) + b * t


@lru_cache(maxsize=None)
def _sample(name: str) -> np.ndarray:
    import skimage.data

    image = np.asarray(getattr(skimage.data, name)(), dtype=np.float32)
    return image[..., :3] if image.ndim == 3 else image


def texture(rng: np.random.Generator, size: tuple[int, int], names: tuple[str, ...] = TEXTURES) -> np.ndarray:
    """A random crop of a scikit-image sample photo, scaled to `size`, tinted (grey ones) and muted."""
    from PIL import Image

    h, w = size
    src = _sample(names[int(rng.integers(len(names)))])
    sh, sw = src.shape[:2]
    # a crop 25-60% of the photo's shorter side across: its texture, rarely a whole object (coffee's cup)
    scale = rng.uniform(0.25, 0.6) * min(sh, sw) / max(h, w)
    ch, cw = max(2, int(h * scale)), max(2, int(w * scale))
    y0, x0 = int(rng.integers(0, sh - ch + 1)), int(rng.integers(0, sw - cw + 1))
    crop = src[y0:y0 + ch, x0:x0 + cw]
    if crop.ndim == 2:
        grey = np.asarray(Image.fromarray(crop.astype(np.uint8)).resize((w, h), Image.BILINEAR), np.float32)
        mean = grey.mean()
        grey = mean + (grey - mean) * rng.uniform(0.35, 0.9)
        img = grey[..., None] * (muted(rng, saturation=0.25) / 255.0)[None, None, :] * rng.uniform(0.9, 1.3)
    else:
        img = np.asarray(Image.fromarray(crop.astype(np.uint8)).resize((w, h), Image.BILINEAR), np.float32)
        grey = img.mean(axis=2, keepdims=True)
        img = grey + (img - grey) * rng.uniform(0.1, 0.4)         # keep the photo's colours from being named
    return np.clip(img, 0, 255).astype(np.float32)


def backdrop(rng: np.random.Generator, size: tuple[int, int], textures: tuple[str, ...] = TEXTURES) -> np.ndarray:
    """A flat colour, a linear or radial gradient, or a photo texture (about a quarter each)."""
    kind = int(rng.integers(4))
    if kind == 0:
        return np.broadcast_to(muted(rng), (*size, 3)).astype(np.float32)
    if kind in (1, 2):
        return gradient(rng, size, radial=kind == 2).astype(np.float32)
    return texture(rng, size, textures)


# ---- the camera ------------------------------------------------------------------------------
def finish(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Lighting (gain 0.6-1.4, contrast, a slight colour cast), blur, sensor noise and JPEG; BGR uint8."""
    from PIL import Image, ImageFilter

    h, w = img.shape[:2]
    img = img * rng.uniform(0.6, 1.4)
    mean = img.mean()
    img = mean + (img - mean) * rng.uniform(0.7, 1.3)
    if rng.random() < 0.5:
        # per-channel gains within 5%: shifts hues by a few degrees at most, never across a colour's name
        img = img * rng.uniform(0.95, 1.05, 3).astype(np.float32)
    pil = Image.fromarray(np.clip(img, 0, 255).round().astype(np.uint8), "RGB")
    if rng.random() < 0.5 and min(h, w) >= 8:
        pil = pil.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, max(0.3, 0.015 * min(h, w)))))
    img = np.asarray(pil, np.float32)
    if rng.random() < 0.7:
        img = img + rng.normal(0, rng.uniform(2, 20), img.shape).astype(np.float32)
    pil = Image.fromarray(np.clip(img, 0, 255).round().astype(np.uint8), "RGB")
    if rng.random() < 0.6:
        buffer = io.BytesIO()
        pil.save(buffer, format="JPEG", quality=int(rng.integers(15, 96)))
        pil = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    return np.ascontiguousarray(np.asarray(pil, np.uint8)[..., ::-1])
