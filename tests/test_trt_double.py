"""The doubles catch what real TensorRT / CUDA would reject: each wrong use below raises (strict) or
returns TensorRT's failure value (lenient), so a backend that misused the API could not pass.
And the cuda-python double offers nothing the real `cuda.bindings.runtime` lacks."""
from __future__ import annotations

import ctypes
import inspect

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from .trt_double import install


@pytest.fixture
def add_engine(monkeypatch, tmp_path):
    """y = x + 1 with x [N, 4], N in 1..4: a built engine, a context, and the doubles."""
    trt, cudart = install(monkeypatch)
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "one"], ["y"])], "add",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])])
    path = tmp_path / "add.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10), path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    assert trt.OnnxParser(network, logger).parse_from_file(str(path))
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("x", (1, 4), (2, 4), (4, 4))
    assert config.add_optimization_profile(profile) == 0
    plan = builder.build_serialized_network(network, config)
    engine = trt.Runtime(logger).deserialize_cuda_engine(bytes(plan))
    return trt, cudart, engine, engine.create_execution_context(), bytes(plan)


def malloc(cudart, nbytes):
    err, ptr = cudart.cudaMalloc(nbytes)
    assert err == cudart.cudaError_t.cudaSuccess
    return ptr


def test_a_correct_run(add_engine):
    trt, cudart, engine, context, _ = add_engine
    assert [engine.get_tensor_mode(engine.get_tensor_name(i)) for i in range(engine.num_io_tensors)] == \
        [trt.TensorIOMode.INPUT, trt.TensorIOMode.OUTPUT]
    assert engine.get_tensor_profile_shape("x", 0) == [(1, 4), (2, 4), (4, 4)]
    _, stream = cudart.cudaStreamCreate()
    x, y = malloc(cudart, 32), malloc(cudart, 32)
    host = np.arange(8, dtype=np.float32)
    cudart.cudaMemcpyAsync(x, host.ctypes.data, 32, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, stream)
    assert context.set_input_shape("x", (2, 4)) and tuple(context.get_tensor_shape("y")) == (2, 4)
    assert context.set_tensor_address("x", x) and context.set_tensor_address("y", y)
    assert context.execute_async_v3(int(stream))
    out = pinned(cudart, 8)
    cudart.cudaMemcpyAsync(out.ctypes.data, y, 32, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream)
    assert not out.any(), "work queued on a stream must not be visible before cudaStreamSynchronize"
    cudart.cudaStreamSynchronize(stream)
    np.testing.assert_array_equal(out, host + 1)


def pinned(cudart, count):
    """float32 [count] in page-locked host memory (zeroed)."""
    err, ptr = cudart.cudaMallocHost(4 * count)
    assert err == cudart.cudaError_t.cudaSuccess
    return np.ctypeslib.as_array((ctypes.c_float * count).from_address(ptr))


def aligned_host(count):
    """A 256-byte aligned float32 host buffer: a host pointer that fails for being on the host, not misaligned."""
    raw = np.zeros(count + 64, np.float32)
    skip = (-raw.ctypes.data % 256) // 4
    return raw[skip:skip + count]


def _bound(context, cudart, x=None, y=None):
    x = x or malloc(cudart, 32)
    y = y or malloc(cudart, 32)
    context.set_input_shape("x", (2, 4))
    context.set_tensor_address("x", x)
    context.set_tensor_address("y", y)
    return x, y


@pytest.mark.parametrize("mistake, message", [
    ("no_shape", "input shapes not set"),
    ("no_address", "addresses not set"),
    ("in_place", "share memory"),
    ("too_small", "needs 32 bytes"),
    ("host_pointer", "not device memory"),
])
def test_execute_contract(add_engine, mistake, message):
    trt, cudart, engine, context, _ = add_engine
    _, stream = cudart.cudaStreamCreate()
    if mistake == "no_shape":
        context.set_tensor_address("x", malloc(cudart, 32))
        context.set_tensor_address("y", malloc(cudart, 32))
    elif mistake == "no_address":
        context.set_input_shape("x", (2, 4))
        context.set_tensor_address("x", malloc(cudart, 32))
    elif mistake == "in_place":
        x = malloc(cudart, 32)
        _bound(context, cudart, x, x)
    elif mistake == "too_small":
        _bound(context, cudart, y=malloc(cudart, 16))
    elif mistake == "host_pointer":
        _bound(context, cudart, y=aligned_host(8).ctypes.data)
    with pytest.raises(trt.ContractError, match=message):
        context.execute_async_v3(int(stream))


def test_lenient_mode_returns_what_tensorrt_returns(add_engine, monkeypatch):
    trt, cudart, engine, context, plan = add_engine
    monkeypatch.setattr(trt, "STRICT", False)
    assert context.set_input_shape("x", (5, 4)) is False          # outside the profile
    assert context.set_input_shape("y", (2, 4)) is False          # not an input
    assert context.execute_async_v3(int(cudart.cudaStreamCreate()[1])) is False
    assert any("outside optimization profile" in m for _, m in context.logger.messages)


def test_deserialize_only_where_built(add_engine, monkeypatch):
    trt, cudart, engine, context, plan = add_engine
    install(monkeypatch, version="10.13.0")
    assert trt.Runtime(trt.Logger()).deserialize_cuda_engine(plan) is None
    install(monkeypatch, devices=[(9, 0)])
    logger = trt.Logger()
    assert trt.Runtime(logger).deserialize_cuda_engine(plan) is None
    assert "incompatible device" in logger.messages[-1][1]


def test_capture_needs_a_warm_up(add_engine):
    trt, cudart, engine, context, _ = add_engine
    _, stream = cudart.cudaStreamCreate()
    _bound(context, cudart)
    cudart.cudaStreamBeginCapture(stream, cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal)
    with pytest.raises(trt.ContractError, match="warm-up"):
        context.execute_async_v3(int(stream))
    assert cudart.cudaStreamEndCapture(stream)[0] == cudart.cudaError_t.cudaErrorStreamCaptureInvalidated


def test_capture_rules(add_engine):
    trt, cudart, engine, context, _ = add_engine
    _, stream = cudart.cudaStreamCreate()
    _bound(context, cudart)
    assert context.execute_async_v3(int(stream))                 # the warm-up
    mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal
    assert cudart.cudaStreamBeginCapture(0, mode)[0] == cudart.cudaError_t.cudaErrorStreamCaptureUnsupported
    assert cudart.cudaStreamBeginCapture(stream, mode)[0] == cudart.cudaError_t.cudaSuccess
    assert context.execute_async_v3(int(stream))
    assert cudart.cudaMalloc(64)[0] == cudart.cudaError_t.cudaErrorStreamCaptureUnsupported
    assert cudart.cudaStreamEndCapture(stream)[0] == cudart.cudaError_t.cudaErrorStreamCaptureInvalidated


def test_copy_direction_is_checked(add_engine):
    trt, cudart, *_ = add_engine
    _, stream = cudart.cudaStreamCreate()
    d = malloc(cudart, 16)
    host = np.zeros(4, np.float32)
    with pytest.raises(cudart.ContractError, match="do not match the direction"):
        cudart.cudaMemcpyAsync(d, host.ctypes.data, 16, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream)


def test_build_needs_profiles_for_dynamic_inputs(add_engine, tmp_path):
    trt, cudart, *_ = add_engine
    logger = trt.Logger()
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    assert trt.OnnxParser(network, logger).parse_from_file(str(tmp_path / "add.onnx"))
    assert builder.build_serialized_network(network, builder.create_builder_config()) is None
    assert "no optimization profile" in logger.messages[-1][1]
    assert not hasattr(trt, "BuilderFlag"), "precision flags are gone in 11.x: the double must not offer them"


def test_cudart_double_matches_cuda_python():
    runtime = pytest.importorskip("cuda.bindings.runtime")
    from .trt_double import cudart

    for name, double in vars(cudart).items():
        if name.startswith("cuda") and callable(double) and not isinstance(double, type):
            real = getattr(runtime, name, None)
            assert real is not None, f"cuda.bindings.runtime has no {name}"
            signature = real.__doc__.splitlines()[0]
            params = [p.split(":")[0].split()[-1] for p in signature[signature.index("(") + 1:-1].split(",") if p.strip()]
            assert list(inspect.signature(double).parameters) == params, name
        elif name.startswith("cuda") and isinstance(double, type) and hasattr(double, "__members__"):
            for member, value in double.__members__.items():
                assert int(getattr(getattr(runtime, name), member)) == int(value), f"{name}.{member}"


def test_profile_switch_raises_like_the_binding(add_engine, monkeypatch):
    trt, cudart, engine, context, _ = add_engine
    _, stream = cudart.cudaStreamCreate()
    for strict in (True, False):            # pyCore.cpp raises whatever the strictness: it is the binding's
        monkeypatch.setattr(trt, "STRICT", strict)
        with pytest.raises(RuntimeError, match="Error in set optimization profile async"):
            context.set_optimization_profile_async(1, int(stream))
    assert context.set_optimization_profile_async(0, int(stream)) is True


def test_tensor_addresses_must_be_256_byte_aligned(add_engine, monkeypatch):
    trt, cudart, engine, context, _ = add_engine
    x = malloc(cudart, 512)
    with pytest.raises(trt.ContractError, match="256-byte aligned"):
        context.set_tensor_address("x", x + 32)
    monkeypatch.setattr(trt, "STRICT", False)
    assert context.set_tensor_address("x", x + 32) is False
    assert context.set_tensor_address("x", x + 256) is True


def _capture(cudart, context, stream):
    mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
    assert cudart.cudaStreamBeginCapture(stream, mode)[0] == cudart.cudaError_t.cudaSuccess
    assert context.execute_async_v3(int(stream))
    err, graph = cudart.cudaStreamEndCapture(stream)
    assert err == cudart.cudaError_t.cudaSuccess
    return cudart.cudaGraphInstantiate(graph, 0)[1]


@pytest.mark.parametrize("strict", [True, False])
def test_replay_after_a_shape_change_needs_a_plain_execute(add_engine, monkeypatch, strict):
    trt, cudart, engine, context, _ = add_engine
    monkeypatch.setattr(trt, "STRICT", strict)
    _, stream = cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking)
    x, y = _bound(context, cudart)
    host = pinned(cudart, 8)
    host[:] = np.arange(8)
    cudart.cudaMemcpyAsync(x, host.ctypes.data, 32, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, stream)
    assert context.execute_async_v3(int(stream))                 # warm-up at [2, 4]
    graph = _capture(cudart, context, stream)
    x3, y3 = malloc(cudart, 48), malloc(cudart, 48)
    context.set_input_shape("x", (3, 4))                          # another shape, run plainly
    context.set_tensor_address("x", x3)
    context.set_tensor_address("y", y3)
    assert context.execute_async_v3(int(stream))
    context.set_input_shape("x", (2, 4))                          # the captured shape again, but only on the host
    out = pinned(cudart, 8)

    def replay():
        cudart.cudaGraphLaunch(graph, stream)
        cudart.cudaMemcpyAsync(out.ctypes.data, y, 32, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream)
        cudart.cudaStreamSynchronize(stream)

    if strict:
        with pytest.raises(trt.ContractError, match="no plain execute_async_v3 in between"):
            replay()
    else:
        replay()
        assert np.isnan(out).all(), "a stale replay writes wrong outputs"
    context.set_tensor_address("x", x)
    context.set_tensor_address("y", y)
    assert context.execute_async_v3(int(stream))                 # applies [2, 4] on the device again
    replay()
    np.testing.assert_array_equal(out, np.arange(8) + 1)


def test_capture_after_a_shape_change_needs_a_plain_execute(add_engine):
    trt, cudart, engine, context, _ = add_engine
    _, stream = cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking)
    x, y = _bound(context, cudart)
    assert context.execute_async_v3(int(stream))                 # warm at [2, 4]
    context.set_input_shape("x", (3, 4))
    context.set_tensor_address("x", malloc(cudart, 48))
    context.set_tensor_address("y", malloc(cudart, 48))
    assert context.execute_async_v3(int(stream))
    _bound(context, cudart, x, y)                                 # [2, 4] set again, not yet applied
    mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
    cudart.cudaStreamBeginCapture(stream, mode)
    with pytest.raises(trt.ContractError, match="no plain execute_async_v3 has applied"):
        context.execute_async_v3(int(stream))
    assert cudart.cudaStreamEndCapture(stream)[0] == cudart.cudaError_t.cudaErrorStreamCaptureInvalidated


def test_pageable_copies_are_synchronous_and_counted(add_engine):
    trt, cudart, *_ = add_engine
    _, stream = cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking)
    d = malloc(cudart, 32)
    cudart.cudaMemsetAsync(d, 0, 32, stream)
    pageable = np.ones(8, np.float32)
    cudart.cudaMemcpyAsync(pageable.ctypes.data, d, 32, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream)
    assert not pageable.any(), "a copy to pageable memory returns when done, after the stream's queued work"
    assert cudart.state().counts["pageable"] == 1
    page_locked = pinned(cudart, 8)
    page_locked[:] = 1
    cudart.cudaMemcpyAsync(page_locked.ctypes.data, d, 32, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream)
    assert page_locked.all() and cudart.state().counts["pageable"] == 1
    assert cudart.cudaFreeHost(page_locked.ctypes.data)[0] == cudart.cudaError_t.cudaSuccess
    assert not cudart.state().pinned


def test_blocking_streams_wait_for_the_legacy_stream(add_engine):
    trt, cudart, *_ = add_engine
    d = malloc(cudart, 32)
    for flags, waits in ((0, 1), (cudart.cudaStreamNonBlocking, 0)):
        _, stream = cudart.cudaStreamCreateWithFlags(flags)
        before = cudart.state().counts["legacy_waits"]
        cudart.cudaMemsetAsync(d, 1, 32, stream)
        cudart.cudaMemsetAsync(d, 2, 32, 0)          # the legacy default stream
        assert cudart.state().counts["legacy_waits"] - before == waits
        assert cudart.state().streams[int(stream)].nonblocking == bool(flags)
    assert not cudart.state().streams[int(cudart.cudaStreamCreate()[1])].nonblocking


def test_a_driver_older_than_the_runtime_answers_35(add_engine):
    trt, cudart, *_ = add_engine
    cudart.state().runtime_version = 13000                       # cuda-python 13 on a JetPack 6 driver
    assert cudart.cudaGetDeviceCount()[0] == cudart.cudaError_t.cudaErrorInsufficientDriver
    assert cudart.cudaMalloc(16)[0] == cudart.cudaError_t.cudaErrorInsufficientDriver
    assert cudart.cudaDriverGetVersion() == (cudart.cudaError_t.cudaSuccess, 12060)
    cudart.state().runtime_version = 12080                       # a newer 12.x runtime: minor version compatibility
    assert cudart.cudaGetDeviceCount()[0] == cudart.cudaError_t.cudaSuccess


def test_graph_instantiation_can_fail(add_engine):
    trt, cudart, engine, context, _ = add_engine
    _, stream = cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking)
    _bound(context, cudart)
    assert context.execute_async_v3(int(stream))
    cudart.state().fail_instantiate = True
    cudart.cudaStreamBeginCapture(stream, cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal)
    context.execute_async_v3(int(stream))
    graph = cudart.cudaStreamEndCapture(stream)[1]
    assert cudart.cudaGraphInstantiate(graph, 0)[0] == cudart.cudaError_t.cudaErrorInvalidValue
    assert cudart.cudaGraphDestroy(graph)[0] == cudart.cudaError_t.cudaSuccess and not cudart.state().graphs
