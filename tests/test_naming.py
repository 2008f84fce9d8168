"""The scorer behind issue 19's acceptance: does a caption name the one object's colour and shape."""
from __future__ import annotations

import pytest

from edge_caption.evaluation.naming import breakdown, is_empty_caption, names_object, naming_report, report_lines
from edge_caption.evaluation.scenes import EMPTY_CAPTION, Thing


@pytest.mark.parametrize("caption", [
    "a large red circle in the center", "there is a small red circle on the left of the image",
    "A big red circle.", "a red disc", "a red disk", "a red ball", "a red ring at the top",
])
def test_right_colour_and_shape_including_synonyms(caption):
    assert names_object(caption, "red", "circle")


@pytest.mark.parametrize("caption,color,shape", [
    ("a purple rhombus", "purple", "diamond"), ("a violet lozenge", "purple", "diamond"),
    ("a green pentagram", "green", "star"), ("a blue square", "blue", "square"),
])
def test_synonyms_of_other_shapes_and_colours(caption, color, shape):
    assert names_object(caption, color, shape)


@pytest.mark.parametrize("caption", [
    "a large blue circle in the center",            # wrong colour
    "a large red square in the center",             # wrong shape
    "a red box", "a red rectangle",                 # not synonyms of square (or of circle)
    "a red circle to the left of a blue square",    # an extra object
    "a red circle to the left of a red circle",     # an extra object of the same kind
    "two small red circles", "a group of two red circles", "red circles",   # more than one
    "a red and blue circle",                        # two colours for one object
    "a circle", "a red thing",                      # a word missing
    "", EMPTY_CAPTION,                              # nothing named
])
def test_wrong(caption):
    assert not names_object(caption, "red", "circle")


def test_grammar_words_only_for_the_truth():
    with pytest.raises(ValueError, match="grammar colour and shape"):
        names_object("a red circle", "crimson", "circle")


def test_the_empty_caption():
    assert is_empty_caption(EMPTY_CAPTION) and is_empty_caption("An empty scene.")
    assert not is_empty_caption("") and not is_empty_caption("an empty scene with a red circle")
    assert not is_empty_caption("a small purple star on the right")


def test_report_counts_each_kind_of_scene():
    one = (Thing("circle", "red", "large", 0.5, 0.5),)
    two = (Thing("circle", "red", "large", 0.2, 0.5), Thing("star", "blue", "small", 0.8, 0.5))
    report = naming_report([one, one, two, (), ()],
                           ["a red circle", "a blue circle", EMPTY_CAPTION, EMPTY_CAPTION, "a red star"])
    assert report["single_objects"] == 2 and report["single_named_right"] == 1 and report["single_named_rate"] == 0.5
    assert report["object_scenes"] == 3 and report["object_scenes_captioned_empty"] == 1
    assert report["empty_views"] == 2 and report["empty_views_captioned_empty"] == 1 and report["empty_rate"] == 0.5
    assert report_lines(report) == ["single objects named right: 50.0% of 2",
                                    "captioned empty: 33.3% of 3 object scenes",
                                    "captioned empty: 50.0% of 2 empty views"]
    assert naming_report([], [])["single_named_rate"] is None
    with pytest.raises(ValueError, match="2 scenes but 1 captions"):
        naming_report([one, one], ["a red circle"])


def test_breakdown_tells_colour_from_shape_mistakes():
    red_square = (Thing("square", "red", "large", 0.5, 0.5),)
    parts = breakdown([red_square, red_square, (), red_square],
                      ["a red circle", "a red square", EMPTY_CAPTION, "a blue square"])
    assert parts["square"] == {"scenes": 3, "shape_right": 2 / 3, "color_right": 2 / 3, "named_right": 1 / 3}
    assert set(parts) == {"square", "red", "large"}
