"""Caption metrics: edge_caption.evaluation.metrics against pycocoevalcap 1.2, the reference implementation."""
from __future__ import annotations

import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_caption import BackendUnavailableError
from edge_caption.evaluation import metrics

# ~30 images of already-normalized captions: 1-5 references each, and hypotheses that are exact,
# partial, reordered, longer, shorter, repeated, one word, or empty.
FIXED = {
    "exact": (["a red circle on a white table"], "a red circle on a white table"),
    "exact-of-five": (["a man rides a wave", "a surfer on a wave", "a man surfing in the ocean",
                       "someone surfing a big wave", "a person riding a surfboard"], "a surfer on a wave"),
    "partial": (["a dog runs across the grassy field", "a brown dog running on grass"], "a dog runs on the grass"),
    "partial-2": (["two cats sleep on a couch", "two cats are sleeping together"], "two dogs sleep on a bed"),
    "reordered": (["a plate of pizza on a table"], "on a table a plate of pizza"),
    "reordered-2": (["the bus is parked by the road", "a bus parked near a road"], "by the road the bus is parked"),
    "longer": (["a cat"], "a small grey cat sitting on the windowsill next to a plant"),
    "longer-2": (["a kitchen with a stove", "a small kitchen"], "a small kitchen with a stove a sink and a fridge"),
    "shorter": (["a group of people standing around a table full of food"], "people"),
    "shorter-2": (["a man in a suit talking on a phone", "a man on the phone"], "a man"),
    "repeated": (["a dog and a cat"], "a a a a a"),
    "repeated-2": (["a dog chases a dog", "two dogs play"], "dog dog dog dog chases"),
    "one-word": (["a bird on a branch", "a small bird"], "bird"),
    "one-word-2": (["giraffe"], "giraffe"),
    "one-word-3": (["elephants", "two elephants walking"], "zebra"),
    "no-overlap": (["a train at the station"], "purple elephants dancing"),
    "empty": (["a clock tower in a city"], ""),
    "one-word-ref": (["tennis"], "a man playing tennis"),
    "ties": (["a b c", "a b c d e"], "a b c d"),
    "closest-len": (["one two", "one two three four five six"], "one two three"),
    "five-refs": (["a woman holds an umbrella", "a woman with an umbrella in the rain",
                   "a lady holding an umbrella", "person with umbrella", "a woman walking in the rain"],
                  "a woman holding an umbrella in the rain"),
    "numbers": (["3 dogs and 2 cats", "three dogs two cats"], "3 dogs and 2 cats"),
    "clitics": (["a dog 's ball on the grass", "a ball on the grass"], "the dog 's ball"),
    "long": (["a large passenger jet flying through a clear blue sky over the city on a sunny day"],
             "a large jet flying through a blue sky over a city"),
    "common-words": (["a a a the the of"], "a the of"),
    "same-as-other": (["a man rides a wave"], "a man rides a wave"),
    "skateboard": (["a boy doing a trick on a skateboard", "a kid skateboarding", "a skateboarder in the air"],
                   "a boy riding a skateboard"),
    "kitchen-dup": (["a kitchen with a stove", "a kitchen with a stove"], "a kitchen with a stove"),
    "pizza": (["a pizza", "a large pizza with cheese", "a pizza on a plate"], "a pizza with cheese on a plate"),
    "street": (["a busy city street with cars", "cars driving down a street"], "a street with many cars"),
}
FIXED_REFS = {key: refs for key, (refs, _) in FIXED.items()}
FIXED_HYPS = {key: hyp for key, (_, hyp) in FIXED.items()}


@pytest.fixture(scope="module")
def coco():
    """pycocoevalcap's BLEU-1..4, ROUGE-L and CIDEr-D of already-normalized captions."""
    pytest.importorskip("pycocoevalcap")
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    def score(references, hypotheses):
        gts = {k: list(refs) for k, refs in references.items()}
        res = {k: [hyp] for k, hyp in hypotheses.items()}
        bleu, bleu_per_image = Bleu(4).compute_score(gts, res, verbose=0)
        rouge, rouge_per_image = Rouge().compute_score(gts, res)
        cider, cider_per_image = Cider().compute_score(gts, res)
        return {"bleu": (list(bleu), [list(s) for s in bleu_per_image]),
                "rouge": (float(rouge), [float(s) for s in rouge_per_image]),
                "cider": (float(cider), [float(s) for s in cider_per_image])}

    return score


def close(value):
    return pytest.approx(value, abs=1e-6, rel=0)


def assert_same_as_coco(coco, references, hypotheses):
    expected = coco(references, hypotheses)
    bleu, bleu_per_image = metrics.bleu(references, hypotheses)
    assert bleu == close(expected["bleu"][0])
    for order in range(4):
        assert bleu_per_image[order] == close(expected["bleu"][1][order]), f"BLEU-{order + 1}"
    rouge, rouge_per_image = metrics.rouge_l(references, hypotheses)
    assert rouge == close(expected["rouge"][0]) and rouge_per_image == close(expected["rouge"][1])
    cider, cider_per_image = metrics.cider_d(references, hypotheses)
    assert cider == close(expected["cider"][0]) and cider_per_image == close(expected["cider"][1])


def test_fixed_set_matches_pycocoevalcap(coco):
    assert_same_as_coco(coco, FIXED_REFS, FIXED_HYPS)


def test_every_fixed_image_alone_and_in_pairs_matches_pycocoevalcap(coco):
    # CIDEr's document frequency comes from the evaluated set: one image (idf 0) and two are edge cases.
    keys = list(FIXED)
    for first, second in zip(keys, keys[1:] + keys[:1]):
        assert_same_as_coco(coco, {first: FIXED_REFS[first]}, {first: FIXED_HYPS[first]})
        pair = [first, second]
        assert_same_as_coco(coco, {k: FIXED_REFS[k] for k in pair}, {k: FIXED_HYPS[k] for k in pair})


def test_lower_bleu_orders_match_pycocoevalcap():
    pytest.importorskip("pycocoevalcap")
    from pycocoevalcap.bleu.bleu import Bleu

    for n in (1, 2, 3):
        expected, expected_per_image = Bleu(n).compute_score(
            {k: list(v) for k, v in FIXED_REFS.items()}, {k: [v] for k, v in FIXED_HYPS.items()}, verbose=0)
        scores, per_image = metrics.bleu(FIXED_REFS, FIXED_HYPS, n=n)
        assert scores == close(list(expected))
        assert all(ours == close(list(theirs)) for ours, theirs in zip(per_image, expected_per_image, strict=True))


WORDS = ["a", "dog", "cat", "on", "the", "red", "man", "ball", "runs", "grass"]


@st.composite
def caption_sets(draw):
    # A small vocabulary, so that n-grams (and document frequencies) overlap a lot.
    vocab = draw(st.lists(st.sampled_from(WORDS), min_size=2, max_size=5, unique=True))
    sentence = st.lists(st.sampled_from(vocab), min_size=1, max_size=15).map(" ".join)
    images = draw(st.integers(1, 20))
    references = {f"img{i}": draw(st.lists(sentence, min_size=1, max_size=5)) for i in range(images)}
    hypotheses = {key: draw(sentence) for key in references}
    return references, hypotheses


@settings(max_examples=60, deadline=None)
@given(caption_sets())
def test_random_sets_match_pycocoevalcap(coco, sets):
    assert_same_as_coco(coco, *sets)


def test_known_values():
    scores, _ = metrics.bleu({1: ["a red circle on a table"]}, {1: "a red circle on a table"})
    assert scores[3] == pytest.approx(1.0, abs=1e-6)
    assert metrics.rouge_l({1: ["a red circle"]}, {1: "a red circle"}) == (1.0, [1.0])
    # With a single image every n-gram is in "all" reference sets: idf 0, so CIDEr is 0 (as pycocoevalcap).
    assert metrics.cider_d({1: ["a red circle"]}, {1: "a red circle"}) == (0.0, [0.0])
    cider, per_image = metrics.cider_d({1: ["a red circle"], 2: ["a blue square"]}, {1: "a red circle", 2: "a dog"})
    assert per_image[0] > per_image[1] == 0.0 and cider == pytest.approx(sum(per_image) / 2)


def test_empty_hypotheses_score_zero_without_crashing():
    refs, hyps = {1: ["a red circle"], 2: ["a blue square"]}, {1: "", 2: ""}
    bleu, bleu_per_image = metrics.bleu(refs, hyps)
    assert bleu == close([0.0] * 4) and all(s == close([0.0, 0.0]) for s in bleu_per_image)
    assert metrics.rouge_l(refs, hyps) == (0.0, [0.0, 0.0])
    assert metrics.cider_d(refs, hyps) == (0.0, [0.0, 0.0])
    assert metrics.evaluate(refs, hyps, meteor=False)["CIDEr"] == 0.0


@pytest.mark.parametrize("text,expected", [
    ("A Red Circle.", "a red circle"),
    ("  Two   dogs,\nplaying!  ", "two dogs playing"),
    ("A dog's ball; a cat's toy?", "a dog 's ball a cat 's toy"),
    ("Don't stop -- it's 3:30 p.m.", "do n't stop it 's 3:30 p.m."),
    ("1,000 birds: \"flying\" (high) ...", "1,000 birds flying high"),
    ("A man in a t-shirt - e.g. the U.S. flag", "a man in a t-shirt e.g. the u.s. flag"),
    ("dogs' bowls 'quoted' `tick`", "dogs bowls quoted tick"),
    ("", ""),
])
def test_normalize(text, expected):
    assert metrics.normalize(text) == expected


def test_evaluate_keys_values_and_exact_rate():
    refs = {"a": ["A red circle.", "A round red shape"], "b": ["Two dogs play."], "c": ["A cat sleeps"]}
    hyps = {"a": "a red circle", "b": "TWO DOGS PLAY!", "c": "a dog sleeps"}
    scores = metrics.evaluate(refs, hyps, meteor=False)
    assert list(scores) == ["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr", "exact"]
    assert all(type(value) is float for value in scores.values())
    assert scores["exact"] == pytest.approx(2 / 3)
    # evaluate normalizes, then scores exactly as the per-metric functions do
    normalized_refs = {k: [metrics.normalize(r) for r in v] for k, v in refs.items()}
    normalized_hyps = {k: metrics.normalize(v) for k, v in hyps.items()}
    assert [scores[f"BLEU-{n}"] for n in range(1, 5)] == metrics.bleu(normalized_refs, normalized_hyps)[0]
    assert scores["ROUGE-L"] == metrics.rouge_l(normalized_refs, normalized_hyps)[0]
    assert scores["CIDEr"] == metrics.cider_d(normalized_refs, normalized_hyps)[0]


def test_evaluate_rejects_mismatched_or_empty_inputs():
    with pytest.raises(ValueError, match=r"without a hypothesis \['img2'\]"):
        metrics.evaluate({"img1": ["a cat"], "img2": ["a dog"]}, {"img1": "a cat"}, meteor=False)
    with pytest.raises(ValueError, match=r"without references \['img9'\]"):
        metrics.evaluate({"img1": ["a cat"]}, {"img1": "a cat", "img9": "a dog"}, meteor=False)
    with pytest.raises(ValueError, match="non-empty list"):
        metrics.evaluate({"img1": []}, {"img1": "a cat"}, meteor=False)
    with pytest.raises(ValueError, match="non-empty list"):
        metrics.evaluate({"img1": "a cat"}, {"img1": "a cat"}, meteor=False)
    with pytest.raises(ValueError, match="nothing to evaluate"):
        metrics.evaluate({}, {}, meteor=False)


def test_meteor_without_java_is_skipped_or_a_clear_error(monkeypatch):
    monkeypatch.setattr(metrics.shutil, "which", lambda name: None)
    refs, hyps = {1: ["a red circle"]}, {1: "a red circle"}
    assert metrics.meteor(refs, hyps) is None
    assert "METEOR" not in metrics.evaluate(refs, hyps)
    assert "METEOR" not in metrics.evaluate(refs, hyps, meteor=False)
    with pytest.raises(BackendUnavailableError, match="METEOR needs Java"):
        metrics.evaluate(refs, hyps, meteor=True)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("java") is None, reason="METEOR needs Java")
def test_meteor_with_java():
    pytest.importorskip("pycocoevalcap")
    scores = metrics.evaluate(FIXED_REFS, FIXED_HYPS, meteor=True)
    assert list(scores)[-2:] == ["METEOR", "exact"]
    assert type(scores["METEOR"]) is float and 0.0 <= scores["METEOR"] <= 1.0


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("java") is None, reason="PTBTokenizer needs Java")
def test_normalize_agrees_with_ptbtokenizer_on_plain_captions():
    pytest.importorskip("pycocoevalcap")
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    captions = ["A Red Circle.", "A dog's ball, and a cat's toy!", "Don't stop -- it's 3:30 p.m.",
                "Two  people; one child: 1,000 birds?", "e.g. the U.S. flag", "They're here; we've gone & I'll stay",
                "dogs' bowls 'quoted' `tick`", "a/b c-d - e", "hello...world", "a dog,cat", "can't won't",
                "I'm O'Neil", "x--y", "A man riding a wave on top of a surfboard."]
    tokenized = PTBTokenizer().tokenize({i: [{"caption": c}] for i, c in enumerate(captions)})
    assert [metrics.normalize(c) for c in captions] == [tokenized[i][0] for i in range(len(captions))]
