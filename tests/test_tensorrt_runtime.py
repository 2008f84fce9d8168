"""What a real TensorRT / CUDA install does that the doubles now model (issue 18, the runtime side):
TensorRT 8.6 refused, cuda-python newer than the driver explained, graphs never replayed over a
profile or shape change, binding RuntimeErrors mapped, page-locked copies on a non-blocking stream,
failed captures and instantiations cleaned up, I/O dtypes numpy cannot hold refused clearly."""
from __future__ import annotations

import logging
import re

import pytest

from edge_caption import EdgeCaptioner
from edge_caption.errors import BackendUnavailableError
from edge_caption.evaluation.scenes import split_samples

from .test_tensorrt_backend import build, shipped, trt  # noqa: F401  (the double and the shipped model's engines)
from .trt_double import install


@pytest.fixture(scope="module")
def frames():
    return [s.image for s in split_samples("test", count=3)]


def reference(engines, frames, **decoding):
    with EdgeCaptioner(engines, backend="onnxruntime") as ref:
        return [c.token_ids for c in ref.caption_batch(frames, **decoding)]


def test_tensorrt_8_is_refused_and_auto_says_why(shipped, monkeypatch):
    install(monkeypatch, version="8.6.2")               # JetPack 6.0
    with pytest.raises(BackendUnavailableError, match=r"TensorRT 8\.6\.2 is too old.*JetPack 6\.1\+ has TensorRT 10\.3"):
        EdgeCaptioner(shipped, backend="tensorrt")
    with EdgeCaptioner(shipped) as cap:
        assert cap.backend_name == "onnxruntime"
        assert "tensorrt: TensorRT 8.6.2 is too old" in cap.backend_reason and "JetPack 6.1+" in cap.backend_reason


@pytest.mark.parametrize("driver, runtime, pip", [(12060, 13000, '"cuda-python==12.6.*"'),
                                                  (13000, 14000, '"cuda-python==13.*"')])
def test_cuda_python_newer_than_the_driver_names_the_matching_one(shipped, trt, driver, runtime, pip):
    _, cudart = trt
    cudart.state().driver_version, cudart.state().runtime_version = driver, runtime
    with pytest.raises(BackendUnavailableError, match="cudaErrorInsufficientDriver.*pip install " + re.escape(pip)):
        EdgeCaptioner(shipped, backend="tensorrt")
    with EdgeCaptioner(shipped) as cap:
        assert cap.backend_name == "onnxruntime"
        assert f"CUDA {runtime // 1000}.0, newer than this NVIDIA driver's CUDA {driver // 1000}" in cap.backend_reason


def test_mixed_batch_sizes_never_replay_a_stale_graph(shipped, trt, frames):
    _, cudart = trt
    one, three = reference(shipped, frames[:1]), reference(shipped, frames)
    with EdgeCaptioner(shipped, backend="tensorrt") as cap:
        # each size twice (warm-up, capture), then back and forth: every graph now exists, and each
        # switch changes the profile's shapes on the one execution context
        for batch, expected in ((1, one), (1, one), (3, three), (3, three), (1, one), (3, three), (1, one)):
            assert [c.token_ids for c in cap.caption_batch(frames[:batch])] == expected
    assert cudart.state().counts["graph_launch"] > 0


def test_cuda_graphs_false_turns_graphs_off(shipped, trt, frames):
    _, cudart = trt
    expected = reference(shipped, frames)
    with EdgeCaptioner(shipped, backend="tensorrt", cuda_graphs=False) as cap:
        assert "CUDA graphs" not in cap._backend.describe
        for _ in range(3):
            assert [c.token_ids for c in cap.caption_batch(frames)] == expected
    assert cudart.state().counts["graph_launch"] == 0 and not cudart.state().graphs


def test_a_refused_profile_switch_is_our_error(shipped, trt, frames, monkeypatch):
    trt_double, _ = trt

    def refuse(self, profile_index, stream_handle):     # what pyCore.cpp does when the C++ call says false
        raise RuntimeError("Error in set optimization profile async.")

    monkeypatch.setattr(trt_double.IExecutionContext, "set_optimization_profile_async", refuse)
    with EdgeCaptioner(shipped, backend="tensorrt") as cap, \
            pytest.raises(BackendUnavailableError, match=r"refused set_optimization_profile_async\(\d\).*"
                                                         r"Error in set optimization profile async.*edge-caption build"):
        cap.caption_batch(frames)


def test_host_copies_are_page_locked_reused_and_on_a_non_blocking_stream(shipped, trt, frames):
    _, cudart = trt
    with EdgeCaptioner(shipped, backend="tensorrt") as cap:
        assert cudart.state().streams[cap._backend.device.handle].nonblocking
        cap.caption_batch(frames, num_beams=3)
        allocated = cudart.state().counts["host_alloc"]
        cap.caption_batch(frames, num_beams=3)
        assert cudart.state().counts["host_alloc"] == allocated, "the staging buffers are reused"
        assert cudart.state().pinned
    assert cudart.state().counts["pageable"] == 0, "a copy from pageable memory would be synchronous"
    assert not cudart.state().pinned, "close() frees the page-locked buffers"


def test_a_failed_capture_destroys_its_graph(shipped, trt, frames, monkeypatch, caplog):
    trt_double, cudart = trt
    execute = trt_double.IExecutionContext.execute_async_v3

    def fails_in_capture(self, stream_handle):
        if cudart.state().streams[int(stream_handle)].capturing is not None:
            return False                                # the C++ bool, as TensorRT returns it
        return execute(self, stream_handle)

    monkeypatch.setattr(trt_double.IExecutionContext, "execute_async_v3", fails_in_capture)
    expected = reference(shipped, frames)
    with caplog.at_level(logging.WARNING), EdgeCaptioner(shipped, backend="tensorrt") as cap:
        for _ in range(3):
            assert [c.token_ids for c in cap.caption_batch(frames)] == expected
    assert "running it without graphs" in caplog.text
    assert not cudart.state().graphs and not cudart.state().execs, "every graph is destroyed"


def test_graph_instantiation_failure_falls_back_saying_why_once(shipped, trt, frames, caplog):
    _, cudart = trt
    cudart.state().fail_instantiate = True
    expected = reference(shipped, frames)
    with caplog.at_level(logging.WARNING), EdgeCaptioner(shipped, backend="tensorrt") as cap:
        for _ in range(3):
            assert [c.token_ids for c in cap.caption_batch(frames)] == expected
    said = [r.getMessage() for r in caplog.records if "running it without graphs" in r.getMessage()]
    assert said and all("cudaGraphInstantiate" in m for m in said)
    assert len(said) == len({m.split(" (")[0] for m in said}) <= 2, "once per engine"
    assert cudart.state().counts["graph_launch"] == 0 and not cudart.state().graphs


def test_io_dtypes_numpy_cannot_hold_are_refused_clearly(shipped, trt, monkeypatch):
    trt_double, _ = trt
    dtype = trt_double.ICudaEngine.get_tensor_dtype
    monkeypatch.setattr(trt_double.ICudaEngine, "get_tensor_dtype",
                        lambda self, name: trt_double.DataType.BF16 if name == "logits" else dtype(self, name))
    with pytest.raises(BackendUnavailableError, match="BF16 tensor 'logits'.*edge-caption build"):
        EdgeCaptioner(shipped, backend="tensorrt")
