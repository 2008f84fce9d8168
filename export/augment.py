"""Augmented training scenes: the generator's shapes shown the ways a camera may show them.

The scene generator (`edge_caption.evaluation.scenes`) draws small or large shapes, nearly upright,
on muted square backgrounds. A model trained only on that calls an axis-aligned square a circle and
invents an object in a blank frame. Here the same grammar's objects are drawn at any scale (up to
filling most of the frame), any rotation, filled or outlined, with their colour jittered within its
name, on flat, gradient and procedural textured backgrounds, in frames of several sizes and aspect
ratios, then lit, blurred, noised and JPEG-compressed; and views with nothing to name (uniform,
noise, texture, gradient, tiny frames blown up, black or white) are captioned `EMPTY_CAPTION`.

Words follow the generator's rules: the size word is "small" when the radius is under 0.1125 of the
frame's shorter side (halfway between the generator's two radii), the region is `region_of` the
centre, relations and counts are `describe`'s. Frames are brought to the model's input size by the
runtime's own geometry (`fit_uint8`: a stretch or a letterbox, as the bundle's spec says), so the model
sees what the bundle's preprocessing gives it.

numpy + OpenCV only, deterministic from a seed; the evaluation side's renderers are never used.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import cv2
import numpy as np

from edge_caption.evaluation.scenes import (COLORS, EMPTY_CAPTION, SHAPES, Thing, _apart, _polygon, background,
                                            describe)
from edge_caption.manifest import Preprocess
from edge_caption.preprocess import fit_uint8

SMALL_BELOW = 0.1125            # radius / shorter side: under it "small", else "large"
SIZE_GAP = 0.008                # radii this close to the boundary are not drawn (their word is a coin toss)
ASPECTS = (1.0, 4 / 3, 16 / 9)
DRAW_LONG = 160                 # the longest side we draw at (see _frame_size)
TRAIN_SPEC = Preprocess(size=(96, 96))     # the reference families' input: a bilinear stretch to 96 x 96
STREAM = 23                     # numpy seed stream of augmented batches (the splits use 1-3, videos 9)


@dataclass(frozen=True)
class Scaled(Thing):
    """A Thing whose radius is any fraction of the frame's shorter side, not one of the two sizes."""
    scale: float = 0.075

    @property
    def radius(self) -> float:
        return self.scale


def size_word(scale: float) -> str:
    """The size word for a radius given as a fraction of the frame's shorter side."""
    return "small" if scale < SMALL_BELOW else "large"


# ---- objects -----------------------------------------------------------------------------------
def _scale(rng: np.random.Generator, lo: float, hi: float) -> float:
    """Log-uniform in [lo, hi], away from the small/large boundary."""
    while True:
        s = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        if abs(s - SMALL_BELOW) >= SIZE_GAP:
            return s


def _thing(rng, w: int, h: int, scale: float, shape=None, color=None) -> Scaled:
    shape = shape or SHAPES[rng.integers(len(SHAPES))]
    color = color or list(COLORS)[rng.integers(len(COLORS))]
    side = min(w, h)
    # keep the whole object in view, and its centre off the thirds' borders (its region word is clear)
    mx, my = min(0.5, scale * side / w * 1.05), min(0.5, scale * side / h * 1.05)
    for _ in range(50):
        x, y = rng.uniform(mx, 1 - mx), rng.uniform(my, 1 - my)
        if min(abs(x - 1 / 3), abs(x - 2 / 3), abs(y - 1 / 3), abs(y - 2 / 3)) >= 0.03:
            break
    return Scaled(shape, color, size_word(scale), float(x), float(y), float(rng.uniform(0, 360)), scale=scale)


def random_things(rng: np.random.Generator, w: int, h: int) -> tuple[Scaled, ...]:
    """One object (most often, at any scale), two different ones, or a group of identical ones."""
    kind = rng.choice(3, p=(0.6, 0.25, 0.15))
    if kind == 0:
        return (_thing(rng, w, h, _scale(rng, 0.055, 0.43)),)
    for _ in range(200):
        if kind == 1:
            a, b = (_thing(rng, w, h, _scale(rng, 0.055, 0.2)) for _ in range(2))
            dx, dy = abs(a.x - b.x), abs(a.y - b.y)       # in the frame's fractions, as relation_of sees them
            if ((a.shape, a.color, a.size) != (b.shape, b.color, b.size) and _apart_px(a, b, w, h)
                    and (dx >= 1.6 * dy or dy >= 1.6 * dx)):
                return (a, b)
        else:
            first = _thing(rng, w, h, _scale(rng, 0.055, 0.16))
            count = int(rng.integers(2, 4))
            lo, hi = (0.055, SMALL_BELOW - SIZE_GAP) if first.size == "small" else (SMALL_BELOW + SIZE_GAP, 0.16)
            group = [first] + [_thing(rng, w, h, _scale(rng, lo, hi), first.shape, first.color) for _ in range(count - 1)]
            if all(_apart_px(p, q, w, h) for i, p in enumerate(group) for q in group[i + 1:]):
                return tuple(group)
    return (_thing(rng, w, h, _scale(rng, 0.055, 0.43)),)


def _apart_px(a: Scaled, b: Scaled, w: int, h: int) -> bool:
    side = min(w, h)
    dist = math.hypot((a.x - b.x) * w, (a.y - b.y) * h)
    return dist >= (a.scale + b.scale + 0.04) * side and _apart(a, b, 0.0)


def _color(rng: np.random.Generator, name: str) -> np.ndarray:
    """The named colour with its hue moved by up to 7 degrees, its saturation and value by a little."""
    hsv = cv2.cvtColor(np.asarray(COLORS[name], np.float32).reshape(1, 1, 3) / 255, cv2.COLOR_BGR2HSV)[0, 0]
    hsv[0] = (hsv[0] + rng.uniform(-7, 7)) % 360
    hsv[1] = np.clip(hsv[1] * rng.uniform(0.75, 1.1), 0, 1)
    hsv[2] = np.clip(hsv[2] * rng.uniform(0.75, 1.12), 0, 1)
    return cv2.cvtColor(hsv.reshape(1, 1, 3), cv2.COLOR_HSV2BGR)[0, 0] * 255


def draw(img: np.ndarray, t: Scaled, color: np.ndarray, outline: float | None = None) -> None:
    """Draw `t` into float32 BGR `img`, filled, or outlined with a stroke of `outline` x its width."""
    h, w = img.shape[:2]
    c = tuple(float(v) for v in color)
    r = t.scale * min(w, h)
    thickness = -1 if outline is None else max(1, int(round(outline * 2 * r)))
    pts = _polygon(t, w, h)
    if pts is None:
        center = (int(round(t.x * w * 16)), int(round(t.y * h * 16)))
        radius = int(round((r if outline is None else r - thickness / 2) * 16))
        cv2.circle(img, center, max(16, radius), c, thickness, cv2.LINE_AA, shift=4)
    elif outline is None:
        cv2.fillPoly(img, [pts], c, cv2.LINE_AA, shift=4)
    else:
        # the stroke inside the outline, so the object keeps its width whatever the stroke
        inner = _polygon(Scaled(t.shape, t.color, t.size, t.x, t.y, t.angle, scale=max(1e-3, t.scale - thickness / (2 * min(w, h)) / 0.95)), w, h)
        cv2.polylines(img, [inner], True, c, thickness, cv2.LINE_AA, shift=4)


# ---- backgrounds -------------------------------------------------------------------------------
def _palette(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two related colours, mostly muted, sometimes saturated: a background's."""
    hsv = np.array([rng.uniform(0, 360), rng.beta(1.2, 2.5), rng.uniform(0.12, 0.95)], np.float32)
    other = hsv + np.array([rng.uniform(-40, 40), rng.uniform(-0.2, 0.2), rng.uniform(-0.4, 0.4)], np.float32)
    other[0] %= 360
    other[1:] = np.clip(other[1:], 0, 1)
    to_bgr = lambda v: cv2.cvtColor(v.reshape(1, 1, 3), cv2.COLOR_HSV2BGR)[0, 0] * 255  # noqa: E731
    return to_bgr(hsv), to_bgr(other)


def _field(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Smooth value noise in 0..1, `cells` blobs across the longer side."""
    gh, gw = max(2, round(cells * h / max(h, w))), max(2, round(cells * w / max(h, w)))
    f = cv2.resize(rng.random((gh, gw)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(f, 0, 1)


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A procedural texture, float32 [h,w] in 0..1: fractal noise, stripes, checks, bricks, grass, gravel."""
    kind = int(rng.integers(6))
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == 0:       # fractal noise
        f = sum(_field(rng, h, w, 2 ** (o + 2)) * 0.55 ** o for o in range(int(rng.integers(2, 6))))
        return (f - f.min()) / max(1e-6, f.max() - f.min())
    if kind == 1:       # stripes, straight or wavy
        a, period = rng.uniform(0, np.pi), rng.uniform(4, max(6, min(h, w) / 3))
        u = np.cos(a) * xs + np.sin(a) * ys + rng.uniform(0, 8) * np.sin(ys / rng.uniform(5, 40))
        return 0.5 + 0.5 * np.sin(2 * np.pi * u / period)
    if kind == 2:       # checks
        period = rng.uniform(6, max(8, min(h, w) / 3))
        return (((xs // period) + (ys // period)) % 2).astype(np.float32)
    if kind == 3:       # bricks: rows of offset blocks with mortar lines
        bh = rng.uniform(6, max(8, h / 5))
        bw = bh * rng.uniform(1.6, 3.0)
        row = ys // bh
        shifted = xs + (row % 2) * bw / 2
        mortar = (ys % bh < max(1, bh * 0.12)) | (shifted % bw < max(1, bw * 0.06))
        tone = rng.random(int(h // bh) + 2)[row.astype(int)] * 0.3
        return np.where(mortar, 0.95, 0.2 + tone + 0.15 * _field(rng, h, w, 24)).astype(np.float32)
    if kind == 4:       # grass: noise stretched along one direction
        f = rng.random((max(2, h // int(rng.integers(6, 16))), max(2, w // 2))).astype(np.float32)
        f = cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR)
        return f if rng.random() < 0.5 else cv2.resize(f.T.copy(), (w, h), interpolation=cv2.INTER_LINEAR)
    img = np.full((h, w), rng.uniform(0.3, 0.7), np.float32)     # gravel: many small pebbles
    for _ in range(int(h * w / rng.uniform(30, 120))):
        cv2.circle(img, (int(rng.integers(w)), int(rng.integers(h))), int(rng.integers(1, 4)), float(rng.random()), -1)
    return img


def backdrop(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A background, float32 BGR [h,w,3]: the generator's own, flat, gradient, or a textured one."""
    kind = rng.choice(5, p=(0.2, 0.15, 0.15, 0.1, 0.4))
    if kind == 0:
        return background(rng, (h, w))
    c1, c2 = _palette(rng)
    if kind == 1:
        return np.broadcast_to(c1, (h, w, 3)).astype(np.float32).copy()
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == 2:       # linear gradient
        a = rng.uniform(0, 2 * np.pi)
        t = np.cos(a) * xs / w + np.sin(a) * ys / h
        t = (t - t.min()) / max(1e-6, t.max() - t.min())
    elif kind == 3:     # radial gradient
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        t = np.hypot(xs - cx, ys - cy)
        t = t / max(1e-6, t.max())
    else:
        t = _texture(rng, h, w)
    return (c1[None, None] * (1 - t[..., None]) + c2[None, None] * t[..., None]).astype(np.float32)


def _far_enough(bg: np.ndarray, colors: list[np.ndarray]) -> bool:
    """Every object colour stands out from the background's mean colour."""
    mean = bg.reshape(-1, 3).mean(axis=0)
    return all(np.linalg.norm(c - mean) >= 70 for c in colors)


# ---- the camera --------------------------------------------------------------------------------
def _frame_size(rng: np.random.Generator) -> tuple[tuple[int, int], float]:
    """(h, w) to draw at, and the camera's long side over ours.

    Cameras give 96 to 480 px on the long side, at 1:1, 4:3 or 16:9; every frame is resized to the
    model's 96 px, so drawing at more than DRAW_LONG px adds only time: we draw at most that, and
    scale the camera's blur and noise by the ratio so the resized frame looks the same."""
    long = int(rng.integers(96, 481))
    aspect = ASPECTS[rng.integers(len(ASPECTS))]
    ratio = max(1.0, long / DRAW_LONG)
    drawn = int(round(long / ratio))
    short = max(8, int(round(drawn / aspect)))
    return ((drawn, short) if rng.random() < 0.25 else (short, drawn)), ratio   # landscape mostly


def camera(rng: np.random.Generator, img: np.ndarray, ratio: float = 1.0) -> np.ndarray:
    """Lighting, blur, sensor noise and JPEG on float32 BGR `img` (drawn `ratio` times smaller than
    the camera's frame); uint8 out."""
    h, w = img.shape[:2]
    mean = img.mean(axis=(0, 1), keepdims=True)
    img = (img - mean) * rng.uniform(0.65, 1.3) + mean                  # contrast
    img = img * rng.uniform(0.6, 1.4) * rng.uniform(0.93, 1.07, 3)      # gain and a slight colour cast
    if rng.random() < 0.25:                                             # uneven light
        img = img * (0.75 + 0.5 * _field(rng, h, w, 3))[..., None]
    if rng.random() < 0.5:
        sigma = rng.uniform(0.3, max(0.4, 0.015 * max(h, w) * ratio)) / ratio
        img = cv2.GaussianBlur(img, (0, 0), max(0.3, sigma))
    # resizing averages noise away: ratio x more pixels per output pixel along each axis at the camera's size
    img = img + rng.normal(0, rng.uniform(0, 20) / ratio, img.shape).astype(np.float32)
    out = np.clip(img, 0, 255).round().astype(np.uint8)
    if rng.random() < 0.5:
        ok, data = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(15, 96))])
        out = cv2.imdecode(data, cv2.IMREAD_COLOR)
    return out


def object_view(rng: np.random.Generator) -> tuple[np.ndarray, tuple[str, ...], tuple[Scaled, ...]]:
    """A scene of the grammar's objects through the camera: BGR uint8 frame, captions, things."""
    (h, w), ratio = _frame_size(rng)
    things = random_things(rng, w, h)
    colors = [_color(rng, t.color) for t in things]
    for _ in range(10):
        img = backdrop(rng, h, w)
        if _far_enough(img, colors):
            break
    outline = rng.random() < 0.3
    for t, c in zip(things, colors):
        draw(img, t, c, rng.uniform(0.06, 0.15) if outline else None)
    return camera(rng, img, ratio), describe(things), things


def empty_view(rng: np.random.Generator) -> np.ndarray:
    """A frame with nothing to name: uniform, noise, texture, gradient, tiny, black or white; BGR uint8."""
    (h, w), ratio = _frame_size(rng)
    kind = int(rng.integers(6))
    if kind == 0:       # uniform (any colour)
        img = np.broadcast_to(rng.uniform(0, 255, 3), (h, w, 3)).astype(np.float32).copy()
    elif kind == 1:     # noise only
        img = rng.uniform(0, 255, (h, w, 3)).astype(np.float32) if rng.random() < 0.4 else \
            np.broadcast_to(rng.uniform(30, 220, 3), (h, w, 3)) + rng.normal(0, rng.uniform(10, 60), (h, w, 3))
        img = img.astype(np.float32)
    elif kind == 2:     # a background with no shape on it
        img = backdrop(rng, h, w)
    elif kind == 3:     # a tiny frame blown up (a 1x1 pixel, a thumbnail)
        side = int(rng.integers(1, 5))
        tiny = rng.uniform(0, 255, (side, side, 3)).astype(np.float32)
        mode = cv2.INTER_NEAREST if rng.random() < 0.5 else cv2.INTER_LINEAR
        img = cv2.resize(tiny, (w, h), interpolation=mode)
    elif kind == 4:     # (nearly) black or white
        level = rng.uniform(0, 25) if rng.random() < 0.5 else rng.uniform(230, 255)
        img = np.full((h, w, 3), level, np.float32)
    else:               # the generator's own background
        img = background(rng, (h, w))
    return camera(rng, img, ratio) if kind != 4 or rng.random() < 0.5 else np.clip(img, 0, 255).astype(np.uint8)


def augmented_batch(seed: int, step: int, objects: int, empty: int, spec: Preprocess = TRAIN_SPEC
                    ) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    """`objects` object views then `empty` empty views for training step `step`, brought to the model's
    input size by `spec`'s geometry (a stretch or a letterbox), as the bundle will bring a camera's frames.

    Returns BGR uint8 [objects + empty, h, w, 3] and each frame's captions; the same for the same
    (seed, step, objects, empty)."""
    rng = np.random.default_rng([seed, STREAM, step])
    frames, captions = [], []
    for _ in range(objects):
        img, caps, _ = object_view(rng)
        frames.append(img)
        captions.append(caps)
    for _ in range(empty):
        frames.append(empty_view(rng))
        captions.append((EMPTY_CAPTION,))
    # fit_uint8 takes RGB (a letterbox's bars are an RGB colour): flip in, flip back out
    images = np.stack([fit_uint8(f[..., ::-1], spec)[..., ::-1] for f in frames]) if frames else \
        np.zeros((0, *spec.size, 3), np.uint8)
    return images, captions


def batches(seed: int, objects: int, empty: int, steps: int, spec: Preprocess = TRAIN_SPEC, *, ahead: int = 4
            ) -> Iterator[tuple[np.ndarray, list[tuple[str, ...]]]]:
    """`augmented_batch(seed, step, ...)` for steps 1..`steps`, drawn `ahead` steps early in a thread,
    so drawing overlaps training (OpenCV and numpy release the GIL; the batches are the same)."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    # a thread, not a process: a spawned process would re-run the caller's script, a forked one
    # would copy torch's thread pools
    with ThreadPoolExecutor(1, thread_name_prefix="augment") as pool:
        pending: deque = deque()
        try:
            for step in range(1, steps + 1):
                while len(pending) < ahead and step + len(pending) <= steps:
                    pending.append(pool.submit(augmented_batch, seed, step + len(pending), objects, empty, spec))
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
