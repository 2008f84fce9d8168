"""The empty-view set (`--data empty`): frames with nothing the grammar can name, each referenced by
`scenes.EMPTY_CAPTION` alone. A captioner that sees nothing must say so rather than invent an object.

Kinds, in turn: uniform colours (grey, muted, and the grammar's own colours filling the frame: a colour
is not an object), sensor noise only, photo textures without shapes (scikit-image's brick, grass,
gravel), linear and radial gradients, tiny frames (1x1 to 8x8), and (nearly) black or white frames.
The larger frames then pass through the foreign set's camera (lighting, blur, noise, JPEG). Drawn with
foreign_draw.py, so the `[eval]` extra is needed; evaluation side only, never imported by training code.
"""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

from . import foreign_draw as draw
from .foreign import frame_size
from .scenes import COLORS, EMPTY_CAPTION, Sample

SPLITS = {"empty": (13, 300)}          # split -> (stream, default size)


def _uniform(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    pick = int(rng.integers(3))
    if pick == 0:
        rgb = np.full(3, rng.uniform(20, 235), np.float32)                 # grey
    elif pick == 1:
        rgb = draw.muted(rng)
    else:
        rgb = np.asarray(COLORS[list(COLORS)[int(rng.integers(len(COLORS)))]][::-1], np.float32)
    return np.broadcast_to(rgb, (*size, 3)).astype(np.float32)


def _noise(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    base = rng.uniform(40, 215)
    if rng.random() < 0.5:                                                  # grey or colour Gaussian noise
        shape = (*size, 1) if rng.random() < 0.5 else (*size, 3)
        img = base + rng.normal(0, rng.uniform(10, 60), shape)
        return np.broadcast_to(img, (*size, 3)).astype(np.float32)
    img = np.full((*size, 3), base, np.float32)                             # salt and pepper
    spots = rng.random(size) < rng.uniform(0.01, 0.2)
    img[spots] = rng.choice([0.0, 255.0], size=(int(spots.sum()), 1))
    return img


def _tiny(rng: np.random.Generator, _size: tuple[int, int]) -> np.ndarray:
    side = int(rng.choice([1, 1, 2, 3, 4, 8]))
    h, w = side, int(rng.choice([side, side * 2])) if side > 1 else 1
    return rng.uniform(0, 255, (h, w, 3)).astype(np.float32) if rng.random() < 0.5 else _uniform(rng, (h, w))


def _extreme(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    level = rng.uniform(0, 12) if rng.random() < 0.5 else rng.uniform(243, 255)
    return np.full((*size, 3), level, np.float32) + rng.normal(0, rng.uniform(0, 3), (*size, 3)).astype(np.float32)


KINDS: dict[str, Callable[[np.random.Generator, tuple[int, int]], np.ndarray]] = {
    "uniform": _uniform,
    "noise": _noise,
    "texture": lambda rng, size: draw.texture(rng, size, draw.PLAIN_TEXTURES),
    "linear gradient": lambda rng, size: draw.gradient(rng, size, radial=False),
    "radial gradient": lambda rng, size: draw.gradient(rng, size, radial=True),
    "tiny": _tiny,
    "black or white": _extreme,
}


def frame(rng: np.random.Generator, kind: str) -> np.ndarray:
    """One empty view of `kind` (a key of KINDS); BGR uint8."""
    img = KINDS[kind](rng, frame_size(rng))
    if kind in ("tiny", "black or white", "uniform") or rng.random() < 0.3:
        # as made: a camera would blur, brighten or compress these into another kind (or into grey)
        return np.ascontiguousarray(np.clip(img, 0, 255).round().astype(np.uint8)[..., ::-1])
    return draw.finish(np.array(img, dtype=np.float32), rng)


def split_samples(split: str = "empty", *, seed: int = 0, count: int | None = None) -> Iterator[Sample]:
    """The fixed empty-view set: sample i is of kind i mod len(KINDS), the same for a seed whatever `count`."""
    if split not in SPLITS:
        raise ValueError(f"unknown empty split {split!r}; choose one of: {', '.join(SPLITS)}")
    draw.require()
    stream, default = SPLITS[split]
    kinds = list(KINDS)
    for i in range(default if count is None else count):
        rng = np.random.default_rng([seed, stream, i])
        yield Sample(frame(rng, kinds[i % len(kinds)]), (EMPTY_CAPTION,), ())
