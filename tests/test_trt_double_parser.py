"""The TensorRT double's ONNX parser refuses what TensorRT 10.3's refuses (tests/trt_double/parser.py
names the source of each rule), and its 8.6 generation lacks what 8.6 lacks (trt8.py)."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edge_caption.captioner import default_bundle_path  # noqa: E402

from .trt_double import install  # noqa: E402


def graph_file(tmp_path, nodes, inputs, outputs, initializers=(), *, opset=20, ir=10, name="g.onnx"):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir)
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def dequantize(tmp_path, dtype, zero_point=0, **kwargs):
    x = numpy_helper.from_array(np.arange(6, dtype=dtype).reshape(2, 3), "x")
    scale = numpy_helper.from_array(np.array(0.5, np.float32), "scale")
    zero = numpy_helper.from_array(np.array(zero_point, dtype), "zero")
    node = helper.make_node("DequantizeLinear", ["x", "scale", "zero"], ["y"], name="dq")
    return graph_file(tmp_path, [node], [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
                      [x, scale, zero], **kwargs)


def topk(tmp_path, k, sorted_=1):
    node = helper.make_node("TopK", ["x", "k"], ["values", "ids"], name="topk", sorted=sorted_)
    return graph_file(tmp_path, [node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5000])],
                      [helper.make_tensor_value_info("values", TensorProto.FLOAT, [2, k]),
                       helper.make_tensor_value_info("ids", TensorProto.INT64, [2, k])],
                      [numpy_helper.from_array(np.array([k], np.int64), "k")])


def parse(trt, path):
    logger = trt.Logger(trt.Logger.WARNING)
    network = trt.Builder(logger).create_network(0)
    parser = trt.OnnxParser(network, logger)
    ok = parser.parse_from_file(str(path))
    return ok, [parser.get_error(i) for i in range(parser.num_errors)], network


@pytest.fixture
def trt(monkeypatch):
    return install(monkeypatch)[0]


def test_the_shipped_graphs_parse(trt):
    for name in ("encoder.onnx", "decoder_step.onnx"):
        ok, errors, network = parse(trt, default_bundle_path() / name)
        assert ok and not errors, errors
        assert network.num_inputs and network.num_outputs


def test_dequantize_takes_int8_only(trt, tmp_path):
    assert parse(trt, dequantize(tmp_path, np.int8))[0]
    ok, errors, _ = parse(trt, dequantize(tmp_path, np.int32))
    assert not ok and "INT32" in errors[0] and "INT8, FP8 or INT4" in errors[0]
    ok, errors, _ = parse(trt, dequantize(tmp_path, np.int8, zero_point=3))
    assert not ok and "zero_point must be zero" in errors[0]


def test_topk_k_is_limited_and_sorted(trt, tmp_path):
    assert parse(trt, topk(tmp_path, 3840))[0]
    ok, errors, _ = parse(trt, topk(tmp_path, 3841))
    assert not ok and "3840" in errors[0]
    ok, errors, _ = parse(trt, topk(tmp_path, 16, sorted_=0))
    assert not ok and "sorted=1" in errors[0]


def test_unsupported_operators_opsets_and_ir_versions(trt, tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.UINT8, [2, 2])
    y = helper.make_tensor_value_info("y", TensorProto.INT32, [2, 2])
    integer = helper.make_node("MatMulInteger", ["x", "x"], ["y"], name="mmi")      # "N" in operators.md
    ok, errors, _ = parse(trt, graph_file(tmp_path, [integer], [x], [y]))
    assert not ok and "No importer registered for op: MatMulInteger" in errors[0]
    relu = lambda: [helper.make_node("Relu", ["a"], ["b"])]  # noqa: E731
    io = ([helper.make_tensor_value_info("a", TensorProto.FLOAT, [2])], [helper.make_tensor_value_info("b", TensorProto.FLOAT, [2])])
    assert parse(trt, graph_file(tmp_path, relu(), *io))[0]
    ok, errors, _ = parse(trt, graph_file(tmp_path, relu(), *io, opset=21))
    assert not ok and "opset 21" in errors[0]
    ok, errors, _ = parse(trt, graph_file(tmp_path, relu(), *io, ir=11))
    assert not ok and "IR version 11" in errors[0]


def test_tensorrt_8_6_has_no_strongly_typed_networks_or_int64_io(monkeypatch, tmp_path):
    trt, _ = install(monkeypatch, version="8.6.2")
    assert not hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    assert not hasattr(trt.DataType, "INT64")
    ids = [helper.make_tensor_value_info("ids", TensorProto.INT64, [2])]
    out = [helper.make_tensor_value_info("out", TensorProto.INT64, [2])]
    path = graph_file(tmp_path, [helper.make_node("Identity", ["ids"], ["out"])], ids, out, opset=17)
    ok, errors, network = parse(trt, path)
    assert ok, errors
    assert network.get_input(0).dtype == trt.DataType.INT32 and network.get_output(0).dtype == trt.DataType.INT32
    ok, errors, _ = parse(trt, graph_file(tmp_path, [helper.make_node("Identity", ["ids"], ["out"])], ids, out))
    assert not ok and "opset 20" in errors[0]
    # the next install gives 10.x's enums back
    trt, _ = install(monkeypatch)
    assert trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED == 1 and trt.DataType.INT64
