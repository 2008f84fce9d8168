"""A double of the TensorRT Python API: runtime (engine, execution context) and builder (network,
ONNX parser, profiles, timing cache), holding only calls documented in both TensorRT 10.3 and 11.x.

An "engine" is the ONNX graph plus its build record (profiles, TensorRT version, compute
capability), executed by ONNX Runtime on the cudart double's "device" memory. What a real
TensorRT would reject, this one rejects too, and strictly: a wrong call is logged as an error,
returns False or None as TensorRT does, and (with STRICT, the default) raises `ContractError`, so a
caller that ignores a return value cannot pass. Anything this module lacks (BuilderFlag.FP16, int8
calibrators, execute_v2, bindings...) is an AttributeError: code that used it would not run on one
of the two TensorRT generations.

Runtime behaviours modelled, each with the source it was read from ([H] = NVIDIA/TensorRT
`include/NvInferRuntime.h`, [P] = `python/src/infer/pyCore.cpp`, both on release/10.3):
- deserialization only for the same TensorRT version and compute capability the engine was built
  for, else None and a logged error ([H] IRuntime::deserializeCudaEngine; the developer guide's
  "engines are specific to the TensorRT version and GPU");
- `set_optimization_profile_async` raises RuntimeError("Error in set optimization profile
  async.") where the C++ call returns false, never returns False ([P]
  context_set_optimization_profile_async, PY_ASSERT_RUNTIME_ERROR);
- `set_input_shape`, `set_tensor_address`, `execute_async_v3` return the C++ bool ([P]);
- `set_tensor_address` wants at least 256-byte alignment ([H] IExecutionContext::setTensorAddress:
  "The pointer must have at least 256-byte alignment");
- before `execute_async_v3`: every input shape set and inside the active profile, every I/O tensor
  address set to device memory large enough for its shape, no input sharing bytes with an output
  ([H] enqueueV3, setInputShape, setTensorAddress);
- a profile switch or an input shape change takes effect on the next `execute_async_v3`, which
  also applies it on the device ("layer resource updates on the next call of enqueueV3",
  [H] setOptimizationProfileAsync, IPluginV2DynamicExt::configurePlugin); a CUDA graph captured
  under one (profile, shapes) and replayed after the context's device state moved to another,
  with no plain `execute_async_v3` in between, raises ContractError (STRICT) or writes garbage
  (0xFF bytes: NaN) into its outputs, as stale layer resources would; a capture likewise needs
  the context's current state applied by a plain `execute_async_v3` first (the developer guide's
  "CUDA Graphs" section: warm up with one enqueueV3 before capture);
- CUDA graph capture only after a warm-up `execute_async_v3` with the same profile, shapes and
  addresses (same source);
- a build needs an optimization profile covering every dynamic input, min <= opt <= max.
Not checked against a real install: whether a replay after a state change is always wrong (the
docs only tie the graph to the state it was captured in), and whether an address change alone
(no plugin in our engines) needs a plain enqueue; we treat profile and shapes as state, not
addresses, which the graph freezes.
"""
from __future__ import annotations

import enum
import json
from typing import Any

import numpy as np

from . import cudart

__version__ = "10.3.0"
STRICT = True
MAGIC = b"EDGE-CAPTION-TRT-DOUBLE\n"
ContractError = cudart.ContractError


class Logger:
    class Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = Severity

    def __init__(self, min_severity: "Logger.Severity" = Severity.WARNING):
        self.min_severity = min_severity
        self.messages: list[tuple[Logger.Severity, str]] = []

    def log(self, severity: "Logger.Severity", msg: str) -> None:
        self.messages.append((severity, msg))


def _violate(logger: Logger, message: str, result: Any = False) -> Any:
    logger.log(Logger.ERROR, message)
    if STRICT:
        raise ContractError(message)
    return result


class DataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    FP8 = 6
    BF16 = 7
    INT64 = 8


class TensorIOMode(enum.IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class NetworkDefinitionCreationFlag(enum.IntEnum):
    STRONGLY_TYPED = 1          # 10.x: opt-in; 11.x: always on, the flag kept and ignored


class MemoryPoolType(enum.IntEnum):
    WORKSPACE = 0


class Dims(tuple):
    pass


_ONNX_TYPES = {1: DataType.FLOAT, 10: DataType.HALF, 3: DataType.INT8, 6: DataType.INT32, 9: DataType.BOOL,
               2: DataType.UINT8, 16: DataType.BF16, 7: DataType.INT64}
_NUMPY = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8, DataType.INT32: np.int32,
          DataType.BOOL: np.bool_, DataType.UINT8: np.uint8, DataType.INT64: np.int64}


def _io(model) -> list[tuple[str, TensorIOMode, DataType, Dims]]:
    init = {i.name for i in model.graph.initializer}
    found = []
    for mode, values in ((TensorIOMode.INPUT, model.graph.input), (TensorIOMode.OUTPUT, model.graph.output)):
        for v in values:
            if v.name in init:
                continue
            t = v.type.tensor_type
            shape = Dims(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
            found.append((v.name, mode, _ONNX_TYPES[t.elem_type], shape))
    return found


# ============================================================================ runtime
class Runtime:
    def __init__(self, logger: Logger):
        self.logger = logger

    def deserialize_cuda_engine(self, serialized_engine: bytes) -> "ICudaEngine | None":
        data = bytes(serialized_engine)
        if not data.startswith(MAGIC):
            self.logger.log(Logger.ERROR, "IRuntime::deserializeCudaEngine: not a serialized engine")
            return None
        header, _, onnx_bytes = data[len(MAGIC):].partition(b"\n")
        record = json.loads(header)
        if record["tensorrt_version"] != __version__:
            self.logger.log(Logger.ERROR, f"The engine plan file is not compatible with this version of TensorRT, "
                                          f"expecting {__version__} got {record['tensorrt_version']}")
            return None
        major, minor = cudart.state().devices[cudart.state().current]
        if record["compute_capability"] != f"{major}.{minor}":
            self.logger.log(Logger.ERROR, "The engine plan file is generated on an incompatible device, "
                                          f"expecting compute {major}.{minor} got {record['compute_capability']}")
            return None
        return ICudaEngine(record, onnx_bytes, self.logger)


class ICudaEngine:
    def __init__(self, record: dict, onnx_bytes: bytes, logger: Logger):
        import onnx
        import onnxruntime as ort

        self.record, self.logger = record, logger
        self._io = _io(onnx.load_from_string(onnx_bytes))
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
        self.profiles = [{name: [Dims(s) for s in shapes] for name, shapes in p.items()} for p in record["profiles"]]
        self.strongly_typed = record["strongly_typed"]

    @property
    def num_io_tensors(self) -> int:
        return len(self._io)

    @property
    def num_optimization_profiles(self) -> int:
        return len(self.profiles)

    def get_tensor_name(self, index: int) -> str:
        return self._io[index][0]

    def _find(self, name: str):
        for entry in self._io:
            if entry[0] == name:
                return entry
        return None

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        entry = self._find(name)
        return entry[1] if entry else TensorIOMode.NONE

    def get_tensor_dtype(self, name: str) -> DataType:
        return self._find(name)[2]

    def get_tensor_shape(self, name: str) -> Dims:
        return self._find(name)[3]

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[Dims]:
        if self.get_tensor_mode(name) != TensorIOMode.INPUT or not 0 <= profile_index < len(self.profiles):
            return _violate(self.logger, f"get_tensor_profile_shape({name!r}, {profile_index}): no such input/profile", [])
        return list(self.profiles[profile_index][name])

    def create_execution_context(self) -> "IExecutionContext":
        return IExecutionContext(self)


class IExecutionContext:
    def __init__(self, engine: ICudaEngine):
        self.engine = engine
        self.logger = engine.logger
        self.active_optimization_profile = 0
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self.warm: set = set()
        self.executions = 0
        self._probe_cache: dict = {}
        self.enqueued_state: tuple | None = None    # (profile, shapes) of the last plain execute_async_v3 queued
        self.device_state: tuple | None = None      # ... and of the last one that ran (stream order)

    def set_optimization_profile_async(self, profile_index: int, stream_handle: int) -> bool:
        if not 0 <= profile_index < self.engine.num_optimization_profiles:
            # the binding raises where the C++ call returns false (pyCore.cpp PY_ASSERT_RUNTIME_ERROR)
            self.logger.log(Logger.ERROR, f"setOptimizationProfileAsync: no profile {profile_index}")
            raise RuntimeError("Error in set optimization profile async.")
        self.active_optimization_profile = profile_index
        self.shapes.clear()          # a new profile invalidates the input shapes set so far
        return True

    def set_input_shape(self, name: str, shape) -> bool:
        shape = tuple(int(d) for d in shape)
        if self.engine.get_tensor_mode(name) != TensorIOMode.INPUT:
            return _violate(self.logger, f"set_input_shape: {name!r} is not an input tensor")
        lo, _, hi = self.engine.profiles[self.active_optimization_profile][name]
        if len(shape) != len(lo) or any(not a <= d <= b for a, d, b in zip(lo, shape, hi)):
            return _violate(self.logger, f"set_input_shape: {name!r} {shape} is outside optimization profile "
                                         f"{self.active_optimization_profile} (min {tuple(lo)}, max {tuple(hi)})")
        self.shapes[name] = shape
        return True

    def _inputs(self) -> list[str]:
        return [n for n, mode, *_ in self.engine._io if mode == TensorIOMode.INPUT]

    def _outputs(self) -> list[str]:
        return [n for n, mode, *_ in self.engine._io if mode == TensorIOMode.OUTPUT]

    def get_tensor_shape(self, name: str) -> Dims:
        if name in self.shapes:
            return Dims(self.shapes[name])
        inputs = self._inputs()
        if self.engine.get_tensor_mode(name) != TensorIOMode.OUTPUT or any(n not in self.shapes for n in inputs):
            return Dims(self.engine.get_tensor_shape(name))       # still -1 where unknown
        return Dims(self._probe()[name])

    def _probe(self) -> dict[str, tuple[int, ...]]:
        """Output shapes for the current input shapes (run once on zeros: the double's shape inference)."""
        key = tuple(sorted(self.shapes.items()))
        if key not in self._probe_cache:
            feeds = {n: np.zeros(self.shapes[n], _NUMPY[self.engine.get_tensor_dtype(n)]) for n in self._inputs()}
            outs = self.engine.session.run(self._outputs(), feeds)
            self._probe_cache[key] = {n: o.shape for n, o in zip(self._outputs(), outs)}
        return self._probe_cache[key]

    def set_tensor_address(self, name: str, memory: int) -> bool:
        if self.engine.get_tensor_mode(name) == TensorIOMode.NONE:
            return _violate(self.logger, f"set_tensor_address: {name!r} is not an input or output tensor")
        if int(memory) % 256:
            return _violate(self.logger, f"set_tensor_address: {name!r} at 0x{int(memory):x} is not 256-byte aligned")
        self.addresses[name] = int(memory)
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        device = cudart.state()
        stream = device.streams.get(int(stream_handle))
        if stream is None:
            return _violate(self.logger, f"execute_async_v3: 0x{int(stream_handle):x} is not a stream")
        inputs, outputs = self._inputs(), self._outputs()
        missing = [n for n in inputs if n not in self.shapes]
        if missing:
            return _violate(self.logger, f"execute_async_v3: input shapes not set: {missing}")
        unbound = [n for n in inputs + outputs if n not in self.addresses]
        if unbound:
            return _violate(self.logger, f"execute_async_v3: tensor addresses not set: {unbound}")
        shapes = {n: self.shapes[n] for n in inputs}
        shapes.update(self._probe())
        ranges = {}
        for name in inputs + outputs:
            size = int(np.prod(shapes[name], dtype=np.int64)) * np.dtype(_NUMPY[self.engine.get_tensor_dtype(name)]).itemsize
            ptr = self.addresses[name]
            try:
                found = device.find(ptr, size)
            except ContractError as exc:
                return _violate(self.logger, f"execute_async_v3: {name!r} needs {size} bytes: {exc}")
            if found is None:
                return _violate(self.logger, f"execute_async_v3: {name!r} address 0x{ptr:x} is not device memory")
            ranges[name] = (ptr, ptr + size)
        for i in inputs:
            for o in outputs:
                (a, b), (c, d) = ranges[i], ranges[o]
                if a < d and c < b:
                    return _violate(self.logger, f"execute_async_v3: input {i!r} and output {o!r} share memory; "
                                                 "TensorRT does not support in-place execution")
        key = (self.active_optimization_profile, tuple(sorted(shapes.items())), tuple(sorted(ranges.items())))
        state = (self.active_optimization_profile, tuple(sorted((n, self.shapes[n]) for n in inputs)))
        if stream.capturing is not None:
            if key not in self.warm:
                stream.invalidated = True
                return _violate(self.logger, "execute_async_v3 during CUDA graph capture without a warm-up "
                                             "execute_async_v3 with these shapes and addresses first")
            if self.enqueued_state != state:
                stream.invalidated = True
                return _violate(self.logger, "execute_async_v3 captured after a profile or input shape change "
                                             "that no plain execute_async_v3 has applied yet")
        else:
            self.warm.add(key)
            self.enqueued_state = state
        frozen_shapes = dict(shapes)
        capturing = stream.capturing is not None

        def run() -> None:
            if capturing and any(self.shapes.get(n) != frozen_shapes[n] for n in inputs):
                # conservative: replaying a graph while the context holds other shapes is not something
                # the docs promise works, so the backend must restore the captured shapes first
                raise ContractError("graph replayed while the context's input shapes differ from the captured ones")
            if capturing and self.device_state != state:
                # the profile / shapes applied on the device are another call's: stale layer resources
                message = (f"CUDA graph captured with profile {state[0]} and shapes {dict(state[1])} replayed after "
                           f"the context moved to {self.device_state and (self.device_state[0], dict(self.device_state[1]))} "
                           "with no plain execute_async_v3 in between")
                self.logger.log(Logger.ERROR, message)
                if STRICT:
                    raise ContractError(message)
                for n in outputs:
                    device.view(ranges[n][0], ranges[n][1] - ranges[n][0])[:] = 0xFF
                return
            if not capturing:
                self.device_state = state
            feeds = {}
            for n in inputs:
                dtype = _NUMPY[self.engine.get_tensor_dtype(n)]
                raw = device.view(ranges[n][0], ranges[n][1] - ranges[n][0])
                feeds[n] = raw.view(dtype).reshape(frozen_shapes[n]).copy()
            results = self.engine.session.run(outputs, feeds)
            for n, value in zip(outputs, results):
                if tuple(value.shape) != tuple(frozen_shapes[n]):
                    raise ContractError(f"{n!r}: engine produced {value.shape}, context promised {frozen_shapes[n]}")
                dtype = _NUMPY[self.engine.get_tensor_dtype(n)]
                device.view(ranges[n][0], ranges[n][1] - ranges[n][0])[:] = \
                    np.ascontiguousarray(value, dtype=dtype).reshape(-1).view(np.uint8)
            self.executions += 1

        cudart.enqueue(int(stream_handle), run)
        return True


# the builder half lives in builder.py (module size); it is part of this module's API
from .builder import (Builder, IBuilderConfig, IHostMemory, INetworkDefinition, IOptimizationProfile,  # noqa: E402,F401
                      ITensor, ITimingCache, OnnxParser)
