"""The ONNX parser of the TensorRT double, as strict as TensorRT 10.3's (the oldest we support).

`tensorrt.OnnxParser(network, logger).parse_from_file(path)` reports problems as the real one does:
False, with `num_errors` / `get_error(i)` saying why, never an exception. Behaviours modelled, each
with the source it was read from:

- the file must load and pass `onnx.checker` (a real parser fails on a malformed protobuf);
- default-domain opset 9 to 20 only: onnx-tensorrt `docs/operators.md` ("supports operators in the
  inclusive range of opset 9 to opset 20", release/10.0-GA and release/10.1-GA; the 10.3 branch was
  not reachable from here, the 10.1 text is the nearest read). TensorRT 8.6: "up to Opset 17"
  (release/8.6-GA `docs/operators.md`);
- IR version at most 10: onnx-tensorrt release/10.1-GA reads the protobuf with its ONNX submodule
  (ONNX 1.16, IR_VERSION 10; commit "Update build to support ONNX 1.16 (#968)"), so what a newer IR
  adds goes unread. Stricter than TensorRT by choice: its ModelImporter.cpp only logs the IR version;
- every node's operator in the supported list (`SUPPORTED`, the "Y" rows of release/10.1-GA
  `docs/operators.md`) and in the default domain: anything else has "no importer registered";
- DequantizeLinear's input INT8, FP8 or INT4 and its zero point zero; QuantizeLinear's zero point
  zero (`docs/operators.md`: DequantizeLinear "INT8, FP8, INT4", "`x_zero_point` must be zero";
  QuantizeLinear "`y_zero_point` must be 0"), so an INT32 bias DequantizeLinear is refused;
- TopK: `sorted` must be 1, and a constant K at most 3840 (`docs/operators.md` "`K` input must be
  less than 3840"; NvInfer.h `ITopKLayer`: K <= 3840, the figure in DESIGN.md);
- TensorRT 8.6 (`tensorrt.__version__` 8.x): INT64 network inputs and outputs become INT32
  (release/8.6-GA `docs/operators.md`: "TensorRT will attempt to cast down INT64 to INT32"), see trt8.py.

Not modelled (our graphs do not reach them): subgraphs of If / Loop, per-operator type tables
beyond the quantize nodes, the other operators' attribute restrictions.
"""
from __future__ import annotations

from . import tensorrt as _trt
from .tensorrt import Logger, _io

# release/10.1-GA docs/operators.md, every operator marked "Y"
SUPPORTED = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast CastLike Ceil
Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DeformConv DepthToSpace
DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements
GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample
GroupNormalization GRU HardSigmoid HardSwish Hardmax Identity If ImageScaler InstanceNormalization IsInf IsNaN
LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max
MaxPool Mean MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad
ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range
Reciprocal ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare
Relu Reshape Resize ReverseSequence RNN RoiAlign Round ScaledTanh Scan Scatter ScatterElements ScatterND Selu
Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum
Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
""".split())
OPSETS = {8: (9, 17), 10: (9, 20)}         # TensorRT major -> default-domain opsets it reads
MAX_IR_VERSION = 10
MAX_TOPK = 3840
_DEFAULT_DOMAINS = ("", "ai.onnx")


def major() -> int:
    return int(_trt.__version__.split(".")[0])


class OnnxParser:
    def __init__(self, network, logger: Logger):
        self.network, self.logger = network, logger
        self.errors: list[str] = []

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    def get_error(self, index: int) -> str:
        return self.errors[index]

    def parse_from_file(self, model: str) -> bool:
        import onnx

        try:
            loaded = onnx.load(model)
            onnx.checker.check_model(loaded)
        except Exception as exc:  # the real parser reports, never raises
            self.errors.append(f"ModelImporter: failed to parse {model}: {exc}")
            return False
        self.errors.extend(problems(loaded))
        if self.errors:
            for error in self.errors:
                self.logger.log(Logger.ERROR, error)
            return False
        self.network.onnx_bytes = loaded.SerializeToString()
        tensors = _io(loaded)
        # in the generation's own DataType; 8.6 casts INT64 I/O down to INT32 (it has no INT64)
        cast = {"INT64": "INT32"} if major() < 10 else {}
        tensors = [(n, mode, _trt.DataType[cast.get(t.name, t.name)], s) for n, mode, t, s in tensors]
        self.network._tensors = tensors
        return True


def problems(model) -> list[str]:
    """Every reason TensorRT's ONNX parser would refuse `model` (empty: it parses)."""
    import onnx
    from onnx import numpy_helper

    found = []
    lo, hi = OPSETS[8 if major() < 10 else 10]
    for opset in model.opset_import:
        if opset.domain in _DEFAULT_DOMAINS and not lo <= opset.version <= hi:
            found.append(f"ModelImporter: opset {opset.version} is not supported: TensorRT {_trt.__version__} "
                         f"reads opset {lo} to {hi}")
    if model.ir_version > MAX_IR_VERSION:
        found.append(f"ModelImporter: ONNX IR version {model.ir_version} is newer than {MAX_IR_VERSION}, "
                     "the one this parser was built with")
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type
             for v in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output)}
    constants = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = node.attribute[0].t
    types.update({name: t.data_type for name, t in constants.items()})
    quantized = {onnx.TensorProto.INT8, onnx.TensorProto.FLOAT8E4M3FN, onnx.TensorProto.INT4}

    def zero(name: str) -> bool:
        return name not in constants or not numpy_helper.to_array(constants[name]).any()

    for node in model.graph.node:
        where = f"node {node.name or node.op_type!r} ({node.op_type})"
        if node.domain not in _DEFAULT_DOMAINS or node.op_type not in SUPPORTED:
            found.append(f"{where}: No importer registered for op: {node.op_type} (domain {node.domain or 'ai.onnx'!r})")
            continue
        if node.op_type == "DequantizeLinear":
            given = types.get(node.input[0])
            if given is not None and given not in quantized:
                found.append(f"{where}: DequantizeLinear input {node.input[0]!r} is "
                             f"{onnx.TensorProto.DataType.Name(given)}; TensorRT dequantizes INT8, FP8 or INT4 only")
            if len(node.input) > 2 and node.input[2] and not zero(node.input[2]):
                found.append(f"{where}: x_zero_point must be zero")
        elif node.op_type == "QuantizeLinear" and len(node.input) > 2 and node.input[2] and not zero(node.input[2]):
            found.append(f"{where}: y_zero_point must be zero")
        elif node.op_type == "TopK":
            attributes = {a.name: a for a in node.attribute}
            if "sorted" in attributes and attributes["sorted"].i != 1:
                found.append(f"{where}: TopK needs sorted=1")
            if len(node.input) > 1 and node.input[1] in constants:
                k = int(numpy_helper.to_array(constants[node.input[1]]).reshape(-1)[0])
                if k > MAX_TOPK:
                    found.append(f"{where}: TopK K = {k} is more than TensorRT's limit of {MAX_TOPK}")
    return found
