import dataclasses
import json

import pytest

from edge_caption.errors import BundleError
from edge_caption.manifest import FORMAT_VERSION, GraphSpec, Manifest, Preprocess, StateSpec, TokenizerSpec


def _manifest() -> Manifest:
    return Manifest(
        name="m", version="1", family="vision-encoder-decoder", preprocess=Preprocess(size=(32, 32)),
        tokenizer=TokenizerSpec(file="tokenizer.json", prompt_ids=(0,), eos_token_ids=(0,)),
        encoder=GraphSpec("encoder.onnx", ("pixel_values",), ("cross_key_0",)),
        decoder_step=GraphSpec("decoder_step.onnx", ("input_ids", "cross_key_0", "past_key_0"),
                               ("logits", "present_key_0")),
        memory=("cross_key_0",), state=(StateSpec("past_key_0", "present_key_0", ("N", 2, "T", 16)),),
        vocab_size=320, decoding={"num_beams": 3},
    )


def test_round_trip_through_json():
    m = _manifest()
    assert Manifest.from_dict(json.loads(json.dumps(m.to_dict()))) == m


def test_every_problem_is_reported_at_once():
    data = _manifest().to_dict()
    del data["preprocess"]["size"]
    data["vocab_size"] = "many"
    data["surprise"] = 1
    with pytest.raises(BundleError) as info:
        Manifest.from_dict(data)
    text = str(info.value)
    assert "3 problems" in text
    for piece in ("missing field 'preprocess.size'", "'vocab_size' must be an integer", "unknown field 'surprise'",
                  "edge-caption export"):
        assert piece in text


def test_newer_format_names_the_upgrade():
    data = _manifest().to_dict()
    data["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(BundleError, match=rf"format_version {FORMAT_VERSION + 1}.*pip install -U edge-caption"):
        Manifest.from_dict(data)


def test_inconsistent_graph_names_are_refused():
    data = _manifest().to_dict()
    data["memory"] = ["cross_key_9"]
    with pytest.raises(BundleError, match="memory tensor 'cross_key_9' is not an encoder output"):
        Manifest.from_dict(data)


def test_letterbox_is_format_4_and_a_stretch_bundle_keeps_its_old_layout():
    plain = _manifest().to_dict()
    assert plain["format_version"] == 1 and "fit" not in plain["preprocess"] and "fill" not in plain["preprocess"]
    boxed = dataclasses.replace(_manifest(), preprocess=Preprocess(size=(32, 32), fit="letterbox", fill=(0, 10, 20)))
    data = json.loads(json.dumps(boxed.to_dict()))
    assert data["format_version"] == 4 and data["preprocess"]["fit"] == "letterbox"
    assert Manifest.from_dict(data) == boxed


@pytest.mark.parametrize("preprocess, message", [
    ({"fit": "pad"}, "'preprocess.fit' must be one of stretch, letterbox, got 'pad'"),
    ({"fit": "letterbox", "center_crop": True}, "takes no center_crop, shortest_edge or resize_to"),
    ({"fit": "letterbox", "fill": [0, 300, 0]}, r"'preprocess.fill\[1\]' must be >= 0 and <= 255, got 300"),
])
def test_bad_letterbox_fields_are_named(preprocess, message):
    data = _manifest().to_dict()
    data["preprocess"].update(preprocess)
    with pytest.raises(BundleError, match=message):
        Manifest.from_dict(data)
