"""Captioned scenes we generate: the data set the shipped model learns from, and a fake camera.

A scene is one to three coloured shapes on a noisy, textured background. Its captions come from a
small grammar that names every object's size, colour and shape, and either where a lone object
sits, how two different objects relate ("to the left of", "above", ...), or how many identical
objects there are. Each scene has several paraphrases; all of them are its references.

Everything is deterministic from a seed (numpy's PCG64 and OpenCV drawing), so the train / val /
test splits are fixed without shipping them. Only numpy and OpenCV are needed: `edge-caption eval`
and `edge-caption demo` run on a machine without torch.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

SHAPES = ("circle", "square", "triangle", "diamond", "star")
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles", "diamond": "diamonds",
           "star": "stars"}
# BGR, as OpenCV draws; hues far enough apart to be told from each other, close enough to confuse a weak model
COLORS = {"red": (40, 40, 220), "orange": (20, 140, 250), "yellow": (30, 225, 235), "green": (60, 170, 40),
          "blue": (220, 90, 30), "purple": (170, 50, 150)}
SIZES = {"small": 0.075, "large": 0.15}         # radius as a fraction of the image side
SIZE_SYNONYMS = {"small": "little", "large": "big"}
NUMBERS = {2: "two", 3: "three"}
REGIONS = ("top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right")
RELATIONS = {"left": ("to the left of", "left of"), "right": ("to the right of", "right of"),
             "above": ("above", "over"), "below": ("below", "under")}
INVERSE = {"left": "right", "right": "left", "above": "below", "below": "above"}
SPLITS = {"train": (1, 30000), "val": (2, 500), "test": (3, 1000)}   # split -> (stream, default size)
IMAGE_SIZE = 96
SPECIALS = ("[PAD]", "[BOS]", "[EOS]", "[UNK]")
# What a view with nothing the grammar can name is called: a model must say so rather than invent an object
EMPTY_CAPTION = "an empty scene"


@dataclass(frozen=True)
class Thing:
    shape: str
    color: str
    size: str
    x: float            # centre, fraction of width (may lie outside 0..1 in videos)
    y: float            # centre, fraction of height
    angle: float = 0.0  # degrees

    @property
    def radius(self) -> float:
        return SIZES[self.size]


@dataclass(frozen=True)
class Sample:
    image: np.ndarray           # BGR uint8 [H,W,3]
    captions: tuple[str, ...]   # all paraphrases, the first one canonical
    things: tuple[Thing, ...]


# ---- captions --------------------------------------------------------------------------------
def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _noun_phrase(t: Thing, size_word: str | None = None) -> str:
    size = size_word or t.size
    return f"{_article(size)} {size} {t.color} {t.shape}"


def region_of(t: Thing) -> str:
    col = min(2, max(0, int(t.x * 3)))
    row = min(2, max(0, int(t.y * 3)))
    return REGIONS[row * 3 + col]


def _where(region: str) -> str:
    if region == "center":
        return "in the center"
    if " " in region:
        return f"in the {region} corner"
    return f"on the {region}" if region in ("left", "right") else f"at the {region}"


def relation_of(a: Thing, b: Thing) -> str:
    """Where `a` is relative to `b`, along the axis on which they are furthest apart."""
    dx, dy = a.x - b.x, a.y - b.y
    if abs(dx) >= abs(dy):
        return "left" if dx < 0 else "right"
    return "above" if dy < 0 else "below"


def describe(things: Sequence[Thing]) -> tuple[str, ...]:
    """Every paraphrase of the scene, canonical first; () when the scene is outside the grammar."""
    things = list(things)
    if len(things) == 1:
        t = things[0]
        where = _where(region_of(t))
        np_ = _noun_phrase(t)
        return (f"{np_} {where}", f"there is {np_} {where}", f"{_noun_phrase(t, SIZE_SYNONYMS[t.size])} {where}",
                f"{np_} {where} of the image")
    same = len({(t.shape, t.color, t.size) for t in things}) == 1
    if same and len(things) in NUMBERS:
        t = things[0]
        count = NUMBERS[len(things)]
        plural = PLURALS[t.shape]
        return (f"{count} {t.size} {t.color} {plural}", f"there are {count} {t.size} {t.color} {plural}",
                f"{count} {SIZE_SYNONYMS[t.size]} {t.color} {plural}", f"a group of {count} {t.size} {t.color} {plural}")
    if len(things) == 2 and not same:
        a, b = things
        rel = relation_of(a, b)
        main, alt = RELATIONS[rel]
        return (f"{_noun_phrase(a)} {main} {_noun_phrase(b)}",
                f"{_noun_phrase(b)} {RELATIONS[INVERSE[rel]][0]} {_noun_phrase(a)}",
                f"there is {_noun_phrase(a)} {main} {_noun_phrase(b)}",
                f"{_noun_phrase(a)} {alt} {_noun_phrase(b)}")
    return ()


def vocabulary() -> list[str]:
    """Every word the grammar can produce, after the special tokens; ids are positions in this list."""
    words = {"a", "an", "there", "is", "are", "group", "of", "the", "image", "in", "on", "at", "corner", "to"}
    words |= set(SHAPES) | set(PLURALS.values()) | set(COLORS) | set(SIZES) | set(SIZE_SYNONYMS.values())
    words |= set(NUMBERS.values()) | set(EMPTY_CAPTION.split())
    for region in REGIONS:
        words |= set(region.split())
    for phrases in RELATIONS.values():
        for phrase in phrases:
            words |= set(phrase.split())
    return [*SPECIALS, *sorted(words)]


def encode_caption(text: str, vocab: dict[str, int]) -> list[int]:
    """Caption -> ids (no BOS/EOS); a word outside the grammar is an error, not an [UNK]."""
    try:
        return [vocab[w] for w in text.split()]
    except KeyError as exc:
        raise ValueError(f"word {exc.args[0]!r} is not in the scene vocabulary") from None


# ---- scenes ----------------------------------------------------------------------------------
def _thing(rng: np.random.Generator, shape=None, color=None, size=None) -> Thing:
    shape = shape or SHAPES[rng.integers(len(SHAPES))]
    return Thing(shape=shape, color=color or list(COLORS)[rng.integers(len(COLORS))],
                 size=size or list(SIZES)[rng.integers(len(SIZES))], x=0.5, y=0.5,
                 angle=float(rng.uniform(-12, 12)) if shape in ("square", "triangle", "star") else 0.0)


def _place(rng: np.random.Generator, t: Thing, lo=(0.0, 0.0), hi=(1.0, 1.0)) -> Thing:
    r = t.radius * 1.1
    x = rng.uniform(max(lo[0], r), min(hi[0], 1 - r))
    y = rng.uniform(max(lo[1], r), min(hi[1], 1 - r))
    return Thing(t.shape, t.color, t.size, float(x), float(y), t.angle)


def _apart(a: Thing, b: Thing, margin: float = 0.04) -> bool:
    return math.hypot(a.x - b.x, a.y - b.y) >= a.radius + b.radius + margin


def random_scene(rng: np.random.Generator) -> tuple[Thing, ...]:
    kind = rng.choice(3, p=(0.3, 0.4, 0.3))
    if kind == 0:       # one object, well inside one of the nine regions
        t = _thing(rng)
        region = int(rng.integers(9))
        row, col = divmod(region, 3)
        band = (0.06, 0.27)
        lo = (col / 3 + band[0], row / 3 + band[0])
        hi = (col / 3 + band[1] + 0.06 * (col == 1), row / 3 + band[1] + 0.06 * (row == 1))
        while True:
            placed = _place(rng, t, lo, hi)
            if region_of(placed) == REGIONS[region]:
                return (placed,)
    if kind == 1:       # two different objects, clearly apart along one axis
        while True:
            a, b = _thing(rng), _thing(rng)
            if (a.shape, a.color, a.size) == (b.shape, b.color, b.size):
                continue
            a, b = _place(rng, a), _place(rng, b)
            dx, dy = abs(a.x - b.x), abs(a.y - b.y)
            if _apart(a, b) and (dx >= 2 * dy or dy >= 2 * dx):
                return (a, b)
    template = _thing(rng, size="small" if rng.random() < 0.6 else None)   # a group: count them
    count = int(rng.integers(2, 4))
    while True:
        placed = [_place(rng, _thing(rng, template.shape, template.color, template.size)) for _ in range(count)]
        if all(_apart(p, q) for i, p in enumerate(placed) for q in placed[i + 1:]):
            return tuple(placed)


# ---- rendering -------------------------------------------------------------------------------
def background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A muted gradient with low-frequency blotches and a few faint lines; float32 BGR."""
    h, w = size
    base = rng.uniform(70, 190, 3)
    tint = rng.uniform(-35, 35, 3)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xs / w + np.sin(angle) * ys / h)[..., None]
    img = base[None, None, :] + tint[None, None, :] * ramp
    blotch = rng.normal(0, 1, (4, 4, 3)).astype(np.float32)
    import cv2

    img += cv2.resize(blotch, (w, h), interpolation=cv2.INTER_CUBIC) * rng.uniform(4, 14)
    for _ in range(int(rng.integers(0, 4))):
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        shade = float(rng.uniform(-25, 25))
        layer = np.zeros((h, w), np.float32)
        cv2.line(layer, p1, p2, 1.0, max(1, w // 96), cv2.LINE_AA)
        img += layer[..., None] * shade
    return img.astype(np.float32)


def _polygon(t: Thing, w: int, h: int) -> np.ndarray | None:
    r = t.radius * min(w, h)
    if t.shape == "square":
        angles, radii = np.deg2rad([45, 135, 225, 315]), [r * 0.95] * 4
    elif t.shape == "diamond":
        angles, radii = np.deg2rad([0, 90, 180, 270]), [r * 1.05, r * 0.8, r * 1.05, r * 0.8]
    elif t.shape == "triangle":
        angles, radii = np.deg2rad([-90, 30, 150]), [r * 1.1] * 3
    elif t.shape == "star":
        angles = np.deg2rad(np.arange(10) * 36 - 90)
        radii = [r * 1.1 if i % 2 == 0 else r * 0.45 for i in range(10)]
    else:
        return None
    angles = np.asarray(angles) + np.deg2rad(t.angle)
    pts = np.stack([t.x * w + np.cos(angles) * radii, t.y * h + np.sin(angles) * radii], axis=1)
    return np.round(pts * 16).astype(np.int32)       # 4 fractional bits: smooth edges at any size


def render(things: Sequence[Thing], rng: np.random.Generator, size: tuple[int, int] = (IMAGE_SIZE, IMAGE_SIZE),
           *, backdrop: np.ndarray | None = None, noise: float | None = None) -> np.ndarray:
    """Draw the scene; BGR uint8 [H,W,3]. `backdrop` reuses a background (a video's static camera)."""
    import cv2

    h, w = size
    img = background(rng, size) if backdrop is None else backdrop.copy()
    for t in things:
        jitter = rng.uniform(-18, 18, 3)
        color = tuple(float(c) for c in np.clip(np.asarray(COLORS[t.color]) + jitter, 0, 255))
        pts = _polygon(t, w, h)
        if pts is None:
            center = (int(round(t.x * w * 16)), int(round(t.y * h * 16)))
            cv2.circle(img, center, int(round(t.radius * min(w, h) * 16)), color, -1, cv2.LINE_AA, shift=4)
        else:
            cv2.fillPoly(img, [pts], color, cv2.LINE_AA, shift=4)
    sigma = float(rng.uniform(2, 14)) if noise is None else noise
    img += rng.normal(0, sigma, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).round().astype(np.uint8)


# ---- splits ----------------------------------------------------------------------------------
def split_samples(split: str, *, seed: int = 0, count: int | None = None,
                  size: tuple[int, int] = (IMAGE_SIZE, IMAGE_SIZE)) -> Iterator[Sample]:
    """The fixed `split` ("train" | "val" | "test"): the same images and captions for the same seed.

    Sample i depends only on (seed, split, i), so a prefix of a split is the same whatever `count`."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    stream, default = SPLITS[split]
    for i in range(default if count is None else count):
        rng = np.random.default_rng([seed, stream, i])
        things = random_scene(rng)
        yield Sample(render(things, rng, size), describe(things), things)


def write_split(directory: str | Path, split: str, *, seed: int = 0, count: int | None = None) -> Path:
    """Write a split as PNG files plus `captions.json` ({"images": [{"file", "captions"}]})."""
    import cv2

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    entries = []
    for i, sample in enumerate(split_samples(split, seed=seed, count=count)):
        name = f"{split}_{i:05d}.png"
        cv2.imwrite(str(directory / name), sample.image)
        entries.append({"file": name, "captions": list(sample.captions)})
    (directory / "captions.json").write_text(json.dumps({"split": split, "seed": seed, "images": entries}, indent=1))
    return directory


# ---- video -----------------------------------------------------------------------------------
def scene_video(seed: int = 0, *, frames: int = 240, size: tuple[int, int] = (384, 384)
                ) -> Iterator[tuple[np.ndarray, tuple[str, ...]]]:
    """A fake camera: objects glide in from the edges, cross the view and leave; at most two at once.

    Yields (BGR frame, the paraphrases of what is in view, canonical first; () when the grammar has
    no words for it, e.g. two objects overlapping). The background is static, the sensor noise is not."""
    rng = np.random.default_rng([seed, 9])
    backdrop = background(rng, size)
    live: list[tuple[Thing, float, float]] = []         # thing, vx, vy (fraction of the view per frame)
    cooldown = 0
    for _ in range(frames):
        if len(live) < 2 and cooldown <= 0 and (not live or rng.random() < 0.04):
            live.append(_entering(rng, [t for t, _, _ in live]))
            cooldown = int(rng.integers(20, 50))
        cooldown -= 1
        live = [(Thing(t.shape, t.color, t.size, t.x + vx, t.y + vy, t.angle), vx, vy) for t, vx, vy in live]
        live = [(t, vx, vy) for t, vx, vy in live if -t.radius < t.x < 1 + t.radius and -t.radius < t.y < 1 + t.radius]
        visible = [t for t, _, _ in live if 0 <= t.x <= 1 and 0 <= t.y <= 1]
        overlap = any(not _apart(a, b, 0.0) for i, a in enumerate(visible) for b in visible[i + 1:])
        captions = () if overlap else describe(visible)
        yield render([t for t, _, _ in live], rng, size, backdrop=backdrop, noise=4.0), captions


def _entering(rng: np.random.Generator, others: list[Thing]) -> tuple[Thing, float, float]:
    while True:
        t = _thing(rng)
        if all((t.shape, t.color, t.size) != (o.shape, o.color, o.size) for o in others):
            break
    speed = float(rng.uniform(0.004, 0.009))
    edge = int(rng.integers(4))
    along = float(rng.uniform(0.2, 0.8))
    start = {0: (-t.radius, along), 1: (1 + t.radius, along), 2: (along, -t.radius), 3: (along, 1 + t.radius)}[edge]
    direction = {0: (1, 0), 1: (-1, 0), 2: (0, 1), 3: (0, -1)}[edge]
    drift = float(rng.uniform(-0.3, 0.3))
    vx = speed * (direction[0] + (drift if direction[0] == 0 else 0))
    vy = speed * (direction[1] + (drift if direction[1] == 0 else 0))
    return Thing(t.shape, t.color, t.size, start[0], start[1], t.angle), vx, vy
