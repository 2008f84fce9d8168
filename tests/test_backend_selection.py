"""Backend choice: one version parser, and the reason each skipped backend is reported with."""
import pickle
from types import SimpleNamespace

import pytest

from edge_caption.backends import selection, tensorrt
from edge_caption.backends.base import parse_version
from edge_caption.bundle import Bundle
from edge_caption.captioner import default_bundle_path
from edge_caption.errors import BackendUnavailableError, BundleNotFoundError


@pytest.mark.parametrize("text, parsed", [
    ("10.3.0.30", (10, 3, 0)), ("2.5.1+cu121", (2, 5, 1)), ("2.6.0.dev20240101", (2, 6, 0)),
    ("8.9", (8, 9, 0)), ("10.3", (10, 3, 0)), ("10", (10, 0, 0)),
])
def test_parse_version(text, parsed):
    assert parse_version(text) == parsed


def test_versions_compare_as_numbers_and_a_missing_part_is_zero():
    assert parse_version("9.0") < parse_version("10.0")           # as strings, "9.0" > "10.0"
    assert parse_version("10.3") == parse_version("10.3.0.30")    # an engine's TensorRT 10.3.0 is 10.3
    assert not parse_version("2.5") < parse_version("2.5.0")       # torch 2.5 loads programs of torch 2.5.0


def test_an_error_carries_its_short_reason():
    err = BackendUnavailableError("torch sees no CUDA GPU; use backend='onnxruntime'", reason="torch sees no CUDA GPU")
    assert err.reason == "torch sees no CUDA GPU" and "use backend" in str(err)
    assert pickle.loads(pickle.dumps(err)).reason == "torch sees no CUDA GPU"
    plain = BundleNotFoundError("no bundle at x.ecap")
    assert plain.reason == "no bundle at x.ecap" and isinstance(plain, FileNotFoundError)


def test_auto_reports_the_reason_torch_cuda_was_skipped(monkeypatch):
    def refuse(bundle, device, cuda_graphs):
        raise BackendUnavailableError("torch 2.1 cannot load encoder.pt2: a message with; semicolons; fix it",
                                      reason="torch 2.1 cannot load encoder.pt2 (a; b)")

    monkeypatch.setattr(tensorrt, "why_not", lambda bundle, device: "no engines")
    monkeypatch.setattr(selection, "why_not_torch_cuda", lambda bundle: None)
    monkeypatch.setattr(selection, "_torch_cuda", refuse)
    made, why = selection.create_backend(Bundle.open(default_bundle_path()), "auto", threads=1)
    made.close()
    assert why.endswith("skipped tensorrt: no engines; torch-cuda: torch 2.1 cannot load encoder.pt2 (a; b)")


def test_tensorrt_why_not_is_the_reason_of_the_error(monkeypatch):
    def missing():
        raise BackendUnavailableError("TensorRT is not importable here (ImportError: no; really); install it",
                                      reason="TensorRT is not importable here (ImportError: no; really)")

    monkeypatch.setattr(tensorrt, "load_tensorrt", missing)
    bundle = SimpleNamespace(manifest=SimpleNamespace(engines=("an engine",)))
    assert tensorrt.why_not(bundle) == "TensorRT is not importable here (ImportError: no; really)"
