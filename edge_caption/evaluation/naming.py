"""Does a caption name what is there? The scorer behind issue 19's acceptance numbers.

`names_object(caption, color, shape)`: the caption names exactly one object, and names it with the right
colour word and the right shape word. Wrong when it names another colour or shape anywhere (a second
object included), a count above one ("two red circles"), or no object at all (the empty caption, "").
Size and position are not judged here (CIDEr judges the whole caption).

Words accepted, beside the grammar's own (plurals are recognised so that they can be counted as more
than one object):
  circle: disc, disk, ball, dot, ring (an outlined circle is a ring);
  square: none. "box" is a solid and "rectangle" does not say the sides are equal, so neither names one;
  triangle: none;  diamond: rhombus, lozenge;  star: pentagram;
  purple: violet.  No other colour synonyms: "magenta", "pink", "gold", "brown" name other colours.
"""
from __future__ import annotations

import re
from typing import Iterable, Sequence

from .scenes import COLORS, EMPTY_CAPTION, NUMBERS, PLURALS, SHAPES, Thing

SHAPE_SYNONYMS = {"circle": ("disc", "disk", "ball", "dot", "ring"), "square": (), "triangle": (),
                  "diamond": ("rhombus", "lozenge"), "star": ("pentagram",)}
COLOR_SYNONYMS = {"purple": ("violet",)}
_IRREGULAR_PLURALS = {"rhombus": ("rhombuses", "rhombi")}
# words that name a number of objects above one
_MANY = {*NUMBERS.values(), "four", "five", "several", "many", "some", "group", "pair", "both"}


def _shape_words() -> dict[str, tuple[str, bool]]:
    """word -> (shape, plural)."""
    table: dict[str, tuple[str, bool]] = {}
    for shape in SHAPES:
        for word in (shape, *SHAPE_SYNONYMS[shape]):
            table[word] = (shape, False)
            for plural in _IRREGULAR_PLURALS.get(word, (PLURALS.get(word, word + "s"),)):
                table[plural] = (shape, True)
    return table


SHAPE_WORDS = _shape_words()
COLOR_WORDS = {word: color for color in COLORS for word in (color, *COLOR_SYNONYMS.get(color, ()))}
_WORD = re.compile(r"[a-z]+")


def words(caption: str) -> list[str]:
    """Lower-case words of a caption, punctuation dropped."""
    return _WORD.findall(caption.lower())


def is_empty_caption(caption: str) -> bool:
    """The caption is the empty-scene one ("an empty scene"), whatever its case and punctuation."""
    return words(caption) == EMPTY_CAPTION.split()


def names_object(caption: str, color: str, shape: str) -> bool:
    """True when the caption names one object, of colour `color` and shape `shape` (grammar words)."""
    if color not in COLORS or shape not in SHAPES:
        raise ValueError(f"names_object needs a grammar colour and shape; got {color!r}, {shape!r}")
    tokens = words(caption)
    shapes = _shapes_named(caption)
    colors = {COLOR_WORDS[w] for w in tokens if w in COLOR_WORDS}
    if len(shapes) != 1 or shapes[0] != (shape, False):
        return False
    return colors == {color} and not _MANY.intersection(tokens)


def naming_report(things: Sequence[Sequence[Thing]], captions: Sequence[str]) -> dict[str, float | int]:
    """The acceptance counts over a data set: single-object scenes named right, object scenes captioned
    empty, empty views captioned empty (counts and rates; a rate is None when there is nothing to count)."""
    if len(things) != len(captions):
        raise ValueError(f"{len(things)} scenes but {len(captions)} captions")
    single = [(scene[0], text) for scene, text in zip(things, captions) if len(scene) == 1]
    objects = [text for scene, text in zip(things, captions) if scene]
    empties = [text for scene, text in zip(things, captions) if not scene]
    named = sum(names_object(text, t.color, t.shape) for t, text in single)
    objects_empty = sum(map(is_empty_caption, objects))
    empty_empty = sum(map(is_empty_caption, empties))
    return {"single_objects": len(single), "single_named_right": named, "single_named_rate": _rate(named, single),
            "object_scenes": len(objects), "object_scenes_captioned_empty": objects_empty,
            "object_empty_rate": _rate(objects_empty, objects),
            "empty_views": len(empties), "empty_views_captioned_empty": empty_empty,
            "empty_rate": _rate(empty_empty, empties)}


def breakdown(things: Sequence[Sequence[Thing]], captions: Sequence[str]) -> dict[str, dict[str, float | int]]:
    """For single-object scenes, per true shape and per true colour: how many, and the share whose colour
    word is right, whose shape word is right, and both (names_object): where a model's naming fails."""
    groups: dict[str, list[tuple[Thing, str]]] = {}
    for scene, text in zip(things, captions):
        if len(scene) == 1:
            for key in (scene[0].shape, scene[0].color, scene[0].size):
                groups.setdefault(key, []).append((scene[0], text))
    out = {}
    for key, items in groups.items():
        shape_ok = sum(_shapes_named(text) == [(t.shape, False)] for t, text in items)
        color_ok = sum({COLOR_WORDS[w] for w in words(text) if w in COLOR_WORDS} == {t.color} for t, text in items)
        both = sum(names_object(text, t.color, t.shape) for t, text in items)
        out[key] = {"scenes": len(items), "shape_right": shape_ok / len(items), "color_right": color_ok / len(items),
                    "named_right": both / len(items)}
    return out


def _shapes_named(caption: str) -> list[tuple[str, bool]]:
    return [SHAPE_WORDS[w] for w in words(caption) if w in SHAPE_WORDS]


def _rate(count: int, of: Iterable) -> float | None:
    n = len(of)  # type: ignore[arg-type]
    return count / n if n else None


def report_lines(report: dict) -> list[str]:
    """The eval report's lines for these counts (only those with something to count)."""
    lines = []
    if report["single_objects"]:
        lines.append(f"single objects named right: {report['single_named_rate']:.1%} of {report['single_objects']}")
    if report["object_scenes"]:
        lines.append(f"captioned empty: {report['object_empty_rate']:.1%} of {report['object_scenes']} object scenes")
    if report["empty_views"]:
        lines.append(f"captioned empty: {report['empty_rate']:.1%} of {report['empty_views']} empty views")
    return lines
