"""The same build and captions on a real TensorRT and GPU. Skipped where either is missing, which is
every machine this project has run on so far (see the README's "TensorRT status")."""
from __future__ import annotations

import pytest

pytestmark = [pytest.mark.tensorrt, pytest.mark.gpu]


@pytest.fixture(scope="module")
def real_trt():
    try:
        import tensorrt
        from cuda.bindings import runtime
    except Exception as exc:  # ImportError, or the bindings' OSError without libnvinfer
        pytest.skip(f"TensorRT / cuda-python not importable: {exc}")
    err, count = runtime.cudaGetDeviceCount()
    if int(err) != 0 or count == 0:
        pytest.skip("no CUDA GPU")
    return tensorrt


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_shipped_model_on_real_tensorrt(real_trt, tmp_path, precision):
    from edge_caption import EdgeCaptioner
    from edge_caption.captioner import default_bundle_path
    from edge_caption.export.tensorrt import BuildConfig, build_engines
    from edge_caption.evaluation.scenes import split_samples

    out = build_engines(default_bundle_path(), BuildConfig(precision=precision, batch_sizes=(1, 8),
                                                           timing_cache=tmp_path / "timing.cache"),
                        out=tmp_path / "real.ecap", progress=False)
    frames = [s.image for s in split_samples("test", count=8)]
    with EdgeCaptioner(out, backend="onnxruntime") as ref, EdgeCaptioner(out, backend="tensorrt") as cap:
        assert cap.backend_name == "tensorrt"
        expected = [c.text for c in ref.caption_batch(frames)]
        got = [c.text for c in cap.caption_batch(frames)]
    # TF32 / fp16 arithmetic may flip a near-tie; most captions must still agree exactly
    assert sum(a == b for a, b in zip(got, expected)) >= 7, (got, expected)
