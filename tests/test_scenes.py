"""The generated scenes: deterministic splits, a grammar that says what is drawn, a fake camera."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edge_caption import evaluation
from edge_caption.evaluation import scenes
from edge_caption.errors import DataError


def test_splits_are_fixed_and_prefix_stable():
    a = list(scenes.split_samples("test", count=5))
    b = list(scenes.split_samples("test", count=3))
    for x, y in zip(a, b):
        assert np.array_equal(x.image, y.image) and x.captions == y.captions
    other = next(iter(scenes.split_samples("test", seed=1, count=1)))
    assert not np.array_equal(other.image, a[0].image)
    val = next(iter(scenes.split_samples("val", count=1)))
    assert not np.array_equal(val.image, a[0].image)
    assert a[0].image.shape == (96, 96, 3) and a[0].image.dtype == np.uint8
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        next(scenes.split_samples("dev"))


def test_every_caption_is_in_the_vocabulary_and_names_what_is_drawn():
    vocab = {w: i for i, w in enumerate(scenes.vocabulary())}
    kinds = set()
    for sample in scenes.split_samples("val", count=300):
        assert len(sample.captions) == 4 and len(set(sample.captions)) == 4
        for caption in sample.captions:
            assert len(scenes.encode_caption(caption, vocab)) <= 16
        things = sample.things
        canonical = sample.captions[0]
        for t in things:
            assert t.color in canonical and (t.shape in canonical or scenes.PLURALS[t.shape] in canonical)
        if len(things) == 1:
            kinds.add("one")
            assert scenes.region_of(things[0]).split()[-1] in canonical
        elif len({(t.shape, t.color, t.size) for t in things}) == 1:
            kinds.add("count")
            assert canonical.startswith(scenes.NUMBERS[len(things)])
        else:
            kinds.add("relation")
            a, b = things
            dx, dy = abs(a.x - b.x), abs(a.y - b.y)
            assert dx >= 2 * dy or dy >= 2 * dx, "relations are drawn unambiguously"
    assert kinds == {"one", "count", "relation"}
    with pytest.raises(ValueError, match="'dog' is not in the scene vocabulary"):
        scenes.encode_caption("a dog", vocab)


def test_describe_paraphrases_and_inverse_relations():
    red = scenes.Thing("circle", "red", "large", 0.2, 0.5)
    blue = scenes.Thing("square", "blue", "small", 0.8, 0.55)
    caps = scenes.describe([red, blue])
    assert caps[0] == "a large red circle to the left of a small blue square"
    assert caps[1] == "a small blue square to the right of a large red circle"
    assert scenes.describe([scenes.Thing("star", "orange", "small", 0.1, 0.1)])[0] == \
        "a small orange star in the top left corner"
    two = [scenes.Thing("diamond", "green", "small", 0.2, 0.2), scenes.Thing("diamond", "green", "small", 0.7, 0.7)]
    assert scenes.describe(two)[0] == "two small green diamonds"
    assert scenes.describe([]) == ()


def test_video_objects_move_appear_and_leave():
    frames = list(scenes.scene_video(3, frames=200, size=(128, 128)))
    assert all(f.shape == (128, 128, 3) for f, _ in frames)
    captions = [c for _, c in frames]
    assert len(set(captions)) >= 3, "the view changes over the video"
    assert any(c == () for c in captions), "at times nothing nameable is in view"
    assert all(len(c) == 4 for c in captions if c)
    again = list(scenes.scene_video(3, frames=5, size=(128, 128)))
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(frames, again))
    # consecutive frames differ a little (motion, sensor noise), not a lot
    assert 0 < np.abs(frames[50][0].astype(int) - frames[51][0].astype(int)).mean() < 20


def test_write_split_round_trips_through_eval_loader(tmp_path):
    scenes.write_split(tmp_path / "d", "test", count=4)
    loaded = list(evaluation.load(tmp_path / "d"))
    generated = list(evaluation.load("test", limit=4))
    assert [refs for _, _, refs in loaded] == [refs for _, _, refs in generated]
    assert loaded[0][1].suffix == ".png"
    assert json.loads((tmp_path / "d" / "captions.json").read_text())["split"] == "test"
    with pytest.raises(DataError, match="neither a split name"):
        list(evaluation.load(tmp_path / "nothing"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "captions.json").write_text('{"images": [{"file": "x.png"}]}')
    with pytest.raises(DataError, match="captions"):
        list(evaluation.load(tmp_path / "bad"))
    with pytest.raises(DataError, match="integer seed"):
        list(evaluation.load("test@x"))
