"""Augmented training scenes (export/augment.py): deterministic, and captioned with what is drawn."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge_caption.evaluation.scenes import COLORS, EMPTY_CAPTION, SHAPES, describe, region_of
from edge_caption.export import augment
from edge_caption.export.augment import SIZE_GAP, SMALL_BELOW, Scaled, augmented_batch, draw, size_word


def _hue(bgr) -> float:
    return float(cv2.cvtColor(np.asarray(bgr, np.float32).reshape(1, 1, 3) / 255, cv2.COLOR_BGR2HSV)[0, 0, 0])


def test_batches_are_deterministic_from_seed_and_step():
    a_img, a_caps = augmented_batch(3, 7, 4, 2)
    b_img, b_caps = augmented_batch(3, 7, 4, 2)
    c_img, _ = augmented_batch(3, 8, 4, 2)
    assert a_img.shape == (6, 96, 96, 3) and a_img.dtype == np.uint8
    assert np.array_equal(a_img, b_img) and a_caps == b_caps
    assert not np.array_equal(a_img, c_img)
    assert list(augment.batches(3, 4, 2, steps=2))[1][1] == augmented_batch(3, 2, 4, 2)[1]


def test_empty_views_are_captioned_empty_and_object_views_never():
    _, caps = augmented_batch(0, 1, 12, 30)
    assert all(c == (EMPTY_CAPTION,) for c in caps[12:])
    assert all(c and EMPTY_CAPTION not in c for c in caps[:12])


def test_object_captions_are_the_grammar_of_the_things_drawn():
    rng = np.random.default_rng(4)
    for _ in range(40):
        frame, caps, things = augment.object_view(rng)
        assert caps == describe(things) and caps, things
        h, w = frame.shape[:2]
        for t in things:
            assert t.size == size_word(t.scale) and abs(t.scale - SMALL_BELOW) >= SIZE_GAP
            r = t.scale * min(w, h)
            assert r <= t.x * w + 1 and t.x * w + r <= w + 1 and r <= t.y * h + 1 and t.y * h + r <= h + 1
        if len(things) == 1:
            assert things[0].color in caps[0] and things[0].shape in caps[0] and region_of(things[0]) in " ".join(caps)


def test_size_word_follows_the_shared_rule():
    assert size_word(0.075) == "small" and size_word(0.1124) == "small"
    assert size_word(0.1125) == "large" and size_word(0.43) == "large"
    rng = np.random.default_rng(1)
    scales = [t.scale for _ in range(300) for t in augment.random_things(rng, 160, 90)]
    assert min(scales) >= 0.055 and max(scales) > 0.35        # up to filling most of the frame


@pytest.mark.parametrize("shape", SHAPES)
def test_a_filled_object_is_its_colour_and_as_wide_as_its_scale(shape):
    img = np.full((120, 160, 3), 128, np.float32)
    t = Scaled(shape, "blue", "large", 0.5, 0.5, 0.0, scale=0.3)
    draw(img, t, np.asarray(COLORS["blue"], np.float32))
    assert np.allclose(img[60, 80], COLORS["blue"])
    inked = np.flatnonzero((np.abs(img - 128).sum(axis=2) > 1).any(axis=0))
    width = inked[-1] - inked[0] + 1
    # the generator's shapes: a circle's radius, up to 1.1 x for a triangle's or star's tips, 0.67 x a square's side
    assert 0.6 * 2 * 0.3 * 120 <= width <= 1.1 * 2 * 0.3 * 120 + 2


@pytest.mark.parametrize("shape", SHAPES)
def test_an_outline_keeps_colour_and_shape_words_and_an_empty_middle(shape):
    img = np.full((200, 200, 3), 128, np.float32)
    t = Scaled(shape, "red", "large", 0.5, 0.5, 30.0, scale=0.35)
    draw(img, t, np.asarray(COLORS["red"], np.float32), outline=0.08)
    assert np.allclose(img[100, 100], 128)                      # the middle is background
    red = np.all(np.abs(img - np.asarray(COLORS["red"], np.float32)) < 1, axis=2)
    assert red.sum() > 200
    ys, xs = np.nonzero(red)
    assert np.hypot(ys - 100, xs - 100).max() <= 0.35 * 200 * 1.12 + 1   # the stroke stays inside the object
    assert describe([t])[0] == f"a large red {shape} in the center"


def test_colour_jitter_keeps_each_colours_name():
    rng = np.random.default_rng(0)
    hues = {name: _hue(bgr) for name, bgr in COLORS.items()}
    for name in COLORS:
        for _ in range(50):
            hue = _hue(augment._color(rng, name))
            nearest = min(hues, key=lambda n: min(abs(hues[n] - hue), 360 - abs(hues[n] - hue)))
            assert nearest == name
            assert min(abs(hues[name] - hue), 360 - abs(hues[name] - hue)) <= 7.5


def test_frames_come_in_the_shared_sizes_and_aspects():
    rng = np.random.default_rng(2)
    for _ in range(200):
        (h, w), ratio = augment._frame_size(rng)
        assert max(h, w) <= augment.DRAW_LONG and 96 <= max(h, w) * ratio <= 481
        assert any(abs(max(h, w) / min(h, w) - a) < 0.05 for a in augment.ASPECTS)
