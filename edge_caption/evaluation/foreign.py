"""The foreign evaluation set: scenes the training generator never drew, captioned by its grammar.

`foreign-val` chooses models, `foreign-test` is reported once. Scenes are composed here and drawn by
foreign_draw.py (Pillow, scikit-image textures), not by scenes.py's OpenCV renderer; only the words are
shared: `scenes.describe` writes the references and `scenes.Thing` holds each object. Objects are 15% to
85% of the frame's shorter side across, at any rotation (a quarter exactly axis-aligned), filled or
outlined, on frames 128-480 px on the long side at 1:1, 4:3, 16:9 or 3:4. An object's size word is
"small" when its half-width is under 0.1125 of the shorter side (the midpoint of the training sizes),
else "large"; sizes within 0.0075 of that line are not drawn, so the word is never a coin toss.

Sample i depends only on (seed, split, i): a prefix is the same whatever the count, as in scenes.py.
Evaluation side only: training code must never import this module.
"""
from __future__ import annotations

import math
from typing import Iterator

import numpy as np

from . import foreign_draw as draw
from .scenes import COLORS, REGIONS, SHAPES, Sample, Thing, describe, region_of

SPLITS = {"foreign-val": (11, 500), "foreign-test": (12, 1000)}     # split -> (stream, default size)
SMALL_LIMIT = 0.1125                  # half-width / shorter side below which an object is "small"
SMALL_RADII = (0.075, 0.105)          # 15% .. 21% of the shorter side across
LARGE_RADII = (0.12, 0.425)           # 24% .. 85%
ASPECTS = ((1, 1), (4, 3), (16, 9), (3, 4))
THIRD_MARGIN = 0.03                   # a lone object's centre keeps this far (fraction) from the thirds' lines


def size_word(radius: float) -> str:
    """"small" or "large" for a half-width given as a fraction of the frame's shorter side."""
    return "small" if radius < SMALL_LIMIT else "large"


def frame_size(rng: np.random.Generator) -> tuple[int, int]:
    """(height, width): 128-480 px on the long side, one of the aspect ratios."""
    long = int(rng.integers(128, 481))
    a, b = ASPECTS[int(rng.choice(len(ASPECTS), p=(0.35, 0.3, 0.25, 0.1)))]
    short = max(1, int(round(long * min(a, b) / max(a, b))))
    return (short, long) if a >= b else (long, short)


def _radius(rng: np.random.Generator, small: bool, cap: float = LARGE_RADII[1]) -> float:
    lo, hi = SMALL_RADII if small else (LARGE_RADII[0], max(LARGE_RADII[0], cap))
    return float(rng.uniform(lo, hi))


def _span(radius_px: float, side: int) -> tuple[float, float]:
    """Centre range (fraction of `side`) that keeps a disc of `radius_px` inside the frame with a margin."""
    margin = radius_px * 1.05 + 1
    return margin / side, 1 - margin / side


def _lone_center(rng: np.random.Generator, radius_px: float, size: tuple[int, int]) -> tuple[float, float] | None:
    """A centre well inside one of the regions that can hold the object, chosen uniformly among them."""
    h, w = size
    (xlo, xhi), (ylo, yhi) = _span(radius_px, w), _span(radius_px, h)
    if xlo > xhi or ylo > yhi:
        return None
    options = []
    for region in range(len(REGIONS)):
        row, col = divmod(region, 3)
        x0, x1 = max(xlo, col / 3 + THIRD_MARGIN), min(xhi, (col + 1) / 3 - THIRD_MARGIN)
        y0, y1 = max(ylo, row / 3 + THIRD_MARGIN), min(yhi, (row + 1) / 3 - THIRD_MARGIN)
        if x0 < x1 and y0 < y1:
            options.append((x0, x1, y0, y1))
    if not options:
        return None
    x0, x1, y0, y1 = options[int(rng.integers(len(options)))]
    return float(rng.uniform(x0, x1)), float(rng.uniform(y0, y1))


def _angle(rng: np.random.Generator) -> float:
    return 0.0 if rng.random() < 0.25 else float(rng.uniform(0, 360))


def _pick(rng: np.random.Generator) -> tuple[str, str]:
    """A shape and a colour, uniformly."""
    return SHAPES[int(rng.integers(len(SHAPES)))], list(COLORS)[int(rng.integers(len(COLORS)))]


def _thing(shape: str, color: str, radius: float, x: float, y: float, angle: float) -> Thing:
    return Thing(shape=shape, color=color, size=size_word(radius), x=x, y=y, angle=angle)


def compose(rng: np.random.Generator, size: tuple[int, int]) -> tuple[list[Thing], list[float]]:
    """Half the scenes one object, 30% two different ones (apart along one axis), 20% a group of 2-3
    alike; returns the objects and each one's half-width as a fraction of the shorter side."""
    h, w = size
    short = min(h, w)
    kind = rng.choice(3, p=(0.5, 0.3, 0.2))
    if kind == 0:
        while True:
            radius = _radius(rng, small=rng.random() < 0.3)
            center = _lone_center(rng, radius * short, size)
            if center is not None:
                shape, color = _pick(rng)
                return [_thing(shape, color, radius, *center, _angle(rng))], [radius]
    count = 2 if kind == 1 else int(rng.integers(2, 4))
    alike = (*_pick(rng), bool(rng.random() < 0.5))
    for attempt in range(1000):
        cap = (0.3 if count == 2 else 0.2) * 0.98 ** attempt     # shrink until they fit
        things, radii = [], []
        for _ in range(count):
            shape, color, small = alike if kind == 2 else (*_pick(rng), bool(rng.random() < 0.4))
            radius = _radius(rng, small, cap)
            (xlo, xhi), (ylo, yhi) = _span(radius * short, w), _span(radius * short, h)
            if xlo > xhi or ylo > yhi:
                break
            things.append(_thing(shape, color, radius, float(rng.uniform(xlo, xhi)), float(rng.uniform(ylo, yhi)),
                                 _angle(rng)))
            radii.append(radius)
        else:
            if _acceptable(things, radii, size):
                return things, radii
    raise RuntimeError("could not place the objects of a scene")      # not reached: the caps shrink to fit


def _acceptable(things: list[Thing], radii: list[float], size: tuple[int, int]) -> bool:
    """Apart by a margin; a pair differs and lies clearly along one axis (so its relation has one name)."""
    h, w = size
    short = min(h, w)
    for i in range(len(things)):
        for j in range(i + 1, len(things)):
            a, b = things[i], things[j]
            gap = math.hypot((a.x - b.x) * w, (a.y - b.y) * h) - (radii[i] + radii[j]) * short
            if gap < 0.04 * short:
                return False
    if len(things) == 2 and len({(t.shape, t.color, t.size) for t in things}) == 2:
        dx, dy = abs(things[0].x - things[1].x), abs(things[0].y - things[1].y)
        return dx >= 2 * dy or dy >= 2 * dx
    return len({(t.shape, t.color, t.size) for t in things}) == 1


def render(things: list[Thing], radii: list[float], size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Draw the objects (a third of them as outlines) on a backdrop and pass it through the camera; BGR uint8."""
    h, w = size
    short = min(h, w)
    img = np.array(draw.backdrop(rng, size), dtype=np.float32)
    for t, radius in zip(things, radii):
        r = radius * short
        stroke = 2 * r * rng.uniform(0.06, 0.15) if rng.random() < 0.33 else None
        mask = draw.shape_mask(t.shape, size, (t.x * w, t.y * h), r, t.angle, stroke)
        draw.paint(img, mask, draw.object_color(COLORS[t.color], rng))
    return draw.finish(img, rng)


def layouts(split: str, *, seed: int = 0, count: int | None = None
            ) -> Iterator[tuple[tuple[int, int], list[Thing], list[float], np.random.Generator]]:
    """Each sample's frame size, objects and half-widths (fractions of the shorter side), and the
    generator that then draws it: what a split holds, known without drawing a pixel."""
    if split not in SPLITS:
        raise ValueError(f"unknown foreign split {split!r}; choose one of: {', '.join(SPLITS)}")
    stream, default = SPLITS[split]
    for i in range(default if count is None else count):
        rng = np.random.default_rng([seed, stream, i])
        size = frame_size(rng)
        things, radii = compose(rng, size)
        yield size, things, radii, rng


def split_samples(split: str, *, seed: int = 0, count: int | None = None) -> Iterator[Sample]:
    """The fixed foreign split ("foreign-val" | "foreign-test"): the same frames and captions for a seed."""
    draw.require()
    for size, things, radii, rng in layouts(split, seed=seed, count=count):
        yield Sample(render(things, radii, size, rng), describe(things), tuple(things))
