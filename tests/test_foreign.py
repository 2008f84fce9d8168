"""The foreign evaluation set and the empty-view set: fixed splits, drawn by other code than the training
generator, objects as large as the spec says, captions from the grammar, and their place in `eval`."""
from __future__ import annotations

import ast
import hashlib
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PIL")
pytest.importorskip("skimage")

from edge_caption import evaluation  # noqa: E402
from edge_caption.cli import main  # noqa: E402
from edge_caption.errors import BackendUnavailableError  # noqa: E402
from edge_caption.evaluation import empty, foreign, foreign_draw, scenes  # noqa: E402


def test_foreign_splits_are_fixed_prefix_stable_and_distinct():
    a = list(foreign.split_samples("foreign-test", count=4))
    b = list(foreign.split_samples("foreign-test", count=2))
    for x, y in zip(a, b):
        assert np.array_equal(x.image, y.image) and x.captions == y.captions
    other = next(foreign.split_samples("foreign-test", seed=7, count=1))
    val = next(foreign.split_samples("foreign-val", count=1))
    assert not np.array_equal(other.image, a[0].image) and not np.array_equal(val.image, a[0].image)
    for sample in a:
        assert sample.image.dtype == np.uint8 and sample.image.ndim == 3 and sample.image.shape[2] == 3
        assert 128 <= max(sample.image.shape[:2]) <= 480
    with pytest.raises(ValueError, match="unknown foreign split 'test'"):
        next(foreign.split_samples("test"))


def test_layouts_follow_the_spec_and_captions_come_from_the_grammar():
    vocab = {w: i for i, w in enumerate(scenes.vocabulary())}
    kinds, aspects, angles = Counter(), set(), Counter()
    for (h, w), things, radii, _ in foreign.layouts("foreign-val", count=300):
        kinds[len(things)] += 1
        aspects.add(round(max(h, w) / min(h, w), 1))
        captions = scenes.describe(things)
        assert captions, f"{things} are outside the grammar"
        for caption in captions:
            scenes.encode_caption(caption, vocab)
        for t, radius in zip(things, radii):
            assert 0.075 <= radius <= 0.425                         # 15% .. 85% of the shorter side across
            assert abs(radius - foreign.SMALL_LIMIT) >= 0.0075      # never a coin toss between small and large
            assert t.size == ("small" if radius < 0.1125 else "large")
            r_px = radius * min(h, w)
            assert r_px <= t.x * w and t.x * w + r_px <= w and r_px <= t.y * h and t.y * h + r_px <= h
            angles["axis" if t.angle == 0 else "turned"] += 1
        if len(things) == 1:
            assert min(abs(things[0].x * 3 - k) for k in (1, 2)) > 0.05   # clear of the thirds' lines
    assert set(kinds) == {1, 2, 3} and kinds[1] > 100
    assert aspects == {1.0, 1.3, 1.8} and angles["axis"] > 50 and angles["turned"] > 150


def test_the_splits_scenes_stay_the_ones_measured():
    # benchmarks/results/foreign_before.json and every later number compare models on these scenes: a change
    # to the composition must be deliberate (new digests, and the before numbers measured again)
    digests = {}
    for split in foreign.SPLITS:
        canonical = "\n".join(scenes.describe(things)[0] for _, things, _, _ in foreign.layouts(split))
        digests[split] = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    assert digests == {"foreign-val": "7e5d0616a6214d96", "foreign-test": "8a12bc22f37737c4"}


def test_foreign_test_has_enough_single_object_scenes_for_a_95_percent_criterion():
    single = sum(len(things) == 1 for _, things, _, _ in foreign.layouts("foreign-test"))
    assert single >= 400


def test_shapes_are_what_their_names_say():
    size, center = (200, 200), (100.0, 100.0)
    square = foreign_draw.shape_mask("square", size, center, 60, 0.0)
    ys, xs = np.nonzero(square > 0.5)
    box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
    assert (square > 0.5).sum() / box > 0.97                         # axis-aligned at angle 0
    diamond = foreign_draw.shape_mask("diamond", size, center, 60, 0.0) > 0.5
    ys, xs = np.nonzero(diamond)
    assert (ys.max() - ys.min()) / (xs.max() - xs.min()) == pytest.approx(1.3, abs=0.05)
    ring = foreign_draw.shape_mask("circle", size, center, 60, 0.0, stroke=10)
    assert ring[100, 100] == 0 and ring[100, 45] > 0.5               # an outline leaves the middle empty
    star = foreign_draw.shape_mask("star", size, center, 60, 33.0)
    disc = foreign_draw.shape_mask("circle", size, center, 60, 0.0)
    assert 0.25 < star.sum() / disc.sum() < 0.5


def test_the_foreign_renderer_is_not_the_training_generators_code():
    # Pillow draws the foreign set: OpenCV (the training renderer's library) is never imported, and only the
    # grammar's words and data classes come from scenes.py, never its drawing
    words = {"COLORS", "REGIONS", "SHAPES", "EMPTY_CAPTION", "Sample", "Thing", "describe", "region_of"}
    for module in (foreign, foreign_draw, empty):
        tree = ast.parse(Path(module.__file__).read_text())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        assert "cv2" not in imported and not any(isinstance(node, ast.ImportFrom) and node.module == "cv2"
                                                 for node in ast.walk(tree))
        from_scenes = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                       and node.module == "scenes" for alias in node.names}
        assert from_scenes <= words, f"{module.__name__} takes {from_scenes - words} from scenes.py"


def test_empty_set_covers_every_kind_with_the_empty_caption():
    items = list(empty.split_samples(count=2 * len(empty.KINDS)))
    again = list(empty.split_samples(count=3))
    assert all(np.array_equal(a.image, b.image) for a, b in zip(items, again))
    assert empty.SPLITS["empty"][1] >= 200
    assert all(s.captions == (scenes.EMPTY_CAPTION,) and s.things == () for s in items)
    assert any(s.image.shape[:2] == (1, 1) for s in items)
    assert all(s.image.dtype == np.uint8 and s.image.shape[2] == 3 for s in items)


def test_eval_names_the_new_splits_with_seeds_and_counts():
    assert {"foreign-val", "foreign-test", "empty"} <= set(evaluation.split_names())
    rows = list(evaluation.samples("foreign-val@3", limit=2))
    assert [key for key, *_ in rows] == ["foreign-val_00000", "foreign-val_00001"]
    first = next(foreign.split_samples("foreign-val", seed=3, count=1))
    assert np.array_equal(rows[0][1], first.image) and rows[0][3] == first.things
    assert evaluation.count("foreign-test") == 1000 and evaluation.count("empty", limit=5) == 5
    assert [len(refs) for _, _, refs in evaluation.load("empty", limit=2)] == [1, 1]


def test_without_the_eval_extra_the_error_names_the_pip_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)
    with pytest.raises(BackendUnavailableError, match=r"pip install 'edge-caption\[eval\]'"):
        list(evaluation.load("foreign-test", limit=1))


def test_eval_reports_naming_and_empty_lines(capsys):
    assert main(["eval", "--data", "foreign-val", "--limit", "3", "--meteor", "no", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "CIDEr" in out and "single objects named right:" in out and "object scenes" in out
    assert main(["eval", "--data", "empty", "--limit", "2", "--meteor", "no", "--quiet", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["naming"]
    assert report["empty_views"] == 2 and report["object_scenes"] == 0
