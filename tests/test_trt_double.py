"""The doubles catch what real TensorRT / CUDA would reject: each wrong use below raises (strict) or
returns TensorRT's failure value (lenient), so a backend that misused the API could not pass.
And the cuda-python double offers nothing the real `cuda.bindings.runtime` lacks."""
from __future__ import annotations

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
    out = np.zeros(8, np.float32)
    cudart.cudaMemcpyAsync(out.ctypes.data, y, 32, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream)
    assert not out.any(), "work queued on a stream must not be visible before cudaStreamSynchronize"
    cudart.cudaStreamSynchronize(stream)
    np.testing.assert_array_equal(out, host + 1)


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
        _bound(context, cudart, y=np.zeros(8, np.float32).ctypes.data)
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
