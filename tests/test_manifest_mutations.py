"""A damaged manifest (keys dropped, types swapped, numbers zeroed, negated or made huge) is a
BundleError that names the problem, or the bundle still captions: never another exception, never a
huge allocation or a long hang (issue 16, item 8)."""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_caption import EdgeCaptioner
from edge_caption.captioner import default_bundle_path
from edge_caption.errors import BundleError

SHIPPED = json.loads((default_bundle_path() / "manifest.json").read_text())
HUGE = 10**12
SWAPS = ("text", [], {}, None, True, 1.5, [1, 2])
OPERATIONS = ("drop", "zero", "negate", "huge", *(f"swap{i}" for i in range(len(SWAPS))))
FRAME = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
SECONDS = 20      # one damaged bundle: open it and caption a frame (about a second on a loaded 2-core CPU)


def _paths(node, path=()):
    if path:
        yield path
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield from _paths(value, (*path, key))


PATHS = list(_paths(SHIPPED))


def mutate(data: dict, path: tuple, operation: str) -> bool:
    """Apply one damage at `path`; False when the path is gone (an earlier damage removed it)."""
    parent = data
    for key in path[:-1]:
        try:
            parent = parent[key]
        except (KeyError, IndexError, TypeError):
            return False
    key = path[-1]
    if not isinstance(parent, (dict, list)) or (key not in parent if isinstance(parent, dict) else
                                                not isinstance(key, int) or key >= len(parent)):
        return False
    value = parent[key]
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if operation == "drop":
        del parent[key]
    elif operation in ("zero", "negate", "huge"):
        if not number:
            return False
        parent[key] = {"zero": type(value)(0), "negate": -value, "huge": type(value)(HUGE)}[operation]
    else:
        parent[key] = copy.deepcopy(SWAPS[int(operation[4:])])
    return True


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("damaged")


counter = iter(range(10**6))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(damage=st.lists(st.tuples(st.sampled_from(PATHS), st.sampled_from(OPERATIONS)), min_size=1, max_size=3))
def test_a_damaged_manifest_is_a_clear_error_or_still_captions(workdir, damage):
    data = copy.deepcopy(SHIPPED)
    applied = [(p, op) for p, op in damage if mutate(data, p, op)]
    bundle = workdir / f"b{next(counter)}.ecap"
    bundle.mkdir()
    for name in ("encoder.onnx", "decoder_step.onnx", "tokenizer.json"):     # the files, unchanged
        (bundle / name).symlink_to(default_bundle_path() / name)
    (bundle / "manifest.json").write_text(json.dumps(data))
    started = time.perf_counter()
    try:
        with EdgeCaptioner(bundle, backend="onnxruntime") as captioner:
            caption = captioner.caption(FRAME)
        assert isinstance(caption.text, str)
    except (BundleError, FileNotFoundError) as exc:
        assert str(exc).strip(), f"{type(exc).__name__} without a message after {applied}"
    except Exception as exc:    # noqa: BLE001 - the point of the test
        raise AssertionError(f"{applied} raised {type(exc).__name__}: {exc}") from exc
    assert time.perf_counter() - started < SECONDS, f"{applied} took {time.perf_counter() - started:.0f} s"


def test_the_reported_damage_is_refused_by_range():
    """The two crashes the issue found (size 0: ZeroDivisionError, 10^12: a 1 PiB allocation) and the
    other numbers, all in one error."""
    from edge_caption.manifest import Manifest

    data = copy.deepcopy(SHIPPED)
    data["preprocess"]["size"] = [0, HUGE]
    data["preprocess"]["std"][1] = 0.0
    data["tokenizer"]["eos_token_ids"] = [-1]
    data["decoding"]["max_new_tokens"] = HUGE
    data["state"][0]["shape"][1] = HUGE
    data["files"]["../outside"] = "0" * 64
    with pytest.raises(BundleError) as info:
        Manifest.from_dict(data)
    text = str(info.value)
    for piece in ("'preprocess.size[0]' must be >= 1", "'preprocess.size[1]' must be >= 1 and <= 8192",
                  "'preprocess.std[1]' must be > 0", "'tokenizer.eos_token_ids[0]' must be >= 0",
                  "'decoding.max_new_tokens' must be >= 1 and <= 4096", "'state[0].shape[1]'",
                  "must be a path inside the bundle", "7 problems"):
        assert piece in text, text
    data = copy.deepcopy(SHIPPED)
    data["tokenizer"]["eos_token_ids"] = [SHIPPED["vocab_size"]]
    with pytest.raises(BundleError, match=f"eos_token_ids {SHIPPED['vocab_size']} is outside the vocabulary"):
        Manifest.from_dict(data)
    assert Path(default_bundle_path() / "manifest.json").is_file()
