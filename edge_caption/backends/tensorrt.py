"""TensorRT backend: the bundle's engines run with `execute_async_v3` on tensors bound by
`set_tensor_address`, device memory and the stream through cuda-python (see cuda.py). No torch.

Only calls documented in both TensorRT 10.3 (JetPack 6; 10.13 on JetPack 7) and 11.x are made;
tests/trt_double holds exactly those, and the tests run this module against it end to end.
Per step, only the token ids go to the GPU and the logits (plus small extras such as attention
weights) come back; decoder state and encoder memory stay on the device, reordered there.
A step whose input shapes repeat (an RNN step; the encoder at a fixed batch) is replayed from a
CUDA graph after one warm-up execution; if capture fails, it runs without graphs from then on.
A graph is tied to the profile and input shapes it was captured under, and a profile or shape
change reaches the device only on the next `execute_async_v3`: so a graph is replayed only while
the context's last plain execution had its state, and after any change one plain execution comes
first (mixed batch sizes alternate graphs and plain runs; a steady batch replays every time).
"""
from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..bundle import Bundle
from ..errors import BackendUnavailableError, EngineMismatchError, OptionError
from ..manifest import EngineSpec
from .base import parse_version
from .cuda import CudaError, Device, DeviceTensor, load_cudart
from .tensorrt_static import StaticSession, StaticStep

log = logging.getLogger(__name__)

INSTALL = ("TensorRT is not importable here ({why}); on a Jetson it comes with JetPack (sudo apt install "
           "nvidia-jetpack; JetPack 6.1+ = TensorRT 10.3), on a desktop: pip install tensorrt; "
           "cuda-python comes with pip install 'edge-caption[tensorrt]'")
_NUMPY = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64,
          "BOOL": np.bool_, "UINT8": np.uint8}
MAX_GRAPHS = 16         # captured graphs per engine: one per recurring (profile, shapes); bounds memory
MIN_TENSORRT = (10, 0, 0)   # STRONGLY_TYPED networks and INT64 I/O; JetPack 6.0's TensorRT 8.6 has neither


def check_tensorrt_version(trt: Any) -> None:
    """Refuse TensorRT older than 10 (JetPack 6.0 ships 8.6) before touching an engine."""
    version = getattr(trt, "__version__", "0")
    if parse_version(version) < MIN_TENSORRT:
        why = f"TensorRT {version} is too old: edge-caption needs TensorRT 10 or newer (JetPack 6.1+ has TensorRT 10.3)"
        raise BackendUnavailableError(f"{why}; on a Jetson upgrade to JetPack 6.1 or newer, on a desktop "
                                      "pip install 'tensorrt>=10.3', or use backend=\"onnxruntime\"", reason=why)


def numpy_dtype(dtype: Any, name: str, file: str) -> np.dtype:
    """The numpy dtype of an engine tensor; BF16 / FP8 / INT4 / FP4 I/O has none, so say so clearly."""
    kind = getattr(dtype, "name", str(dtype))
    if kind not in _NUMPY:
        raise BackendUnavailableError(
            f"{file} has {kind} tensor {name!r} as an input or output, which numpy (and so this backend) cannot hold; "
            "engines from `edge-caption build` keep I/O in fp32 / fp16 / int64: rebuild it with that command",
            reason=f"{file} has {kind} I/O tensor {name!r}")
    return np.dtype(_NUMPY[kind])


def load_tensorrt() -> Any:
    try:
        return importlib.import_module("tensorrt")
    except Exception as exc:  # ImportError, or OSError from bindings whose libnvinfer is missing
        why = f"{type(exc).__name__}: {exc}"
        raise BackendUnavailableError(INSTALL.format(why=why),
                                      reason=f"TensorRT is not importable here ({why})") from exc


def build_command(bundle: Bundle, precision: str | None = None) -> str:
    precisions = sorted({e.precision for e in bundle.manifest.engines}) if precision is None else [precision]
    flag = f" --precision {precisions[0]}" if precisions and precisions[0] != "fp32" else ""
    return f"edge-caption build {bundle.path}{flag}"


def select_engines(bundle: Bundle, compute_capability: str, tensorrt_version: str) -> dict[str, EngineSpec]:
    """The encoder and step engines built for this GPU and TensorRT; the last built wins."""
    engines = bundle.manifest.engines
    if not engines:
        raise BackendUnavailableError(f"{bundle.path} has no TensorRT engines; build them on this machine with: "
                                      f"{build_command(bundle)}")
    here = parse_version(tensorrt_version)
    fits = [e for e in engines if e.compute_capability == compute_capability and parse_version(e.tensorrt_version) == here]
    chosen: dict[str, EngineSpec] = {}
    # the step: the TensorRT-shaped one where it was built, else the dynamic one
    for key, graphs in (("encoder", ("encoder",)), ("step", ("static_step", "decoder_step"))):
        for graph in graphs:
            found = [e for e in fits if e.graph == graph]
            # one precision for both graphs where the bundle has it (the encoder's, as built last)
            same = [e for e in found if "encoder" in chosen and e.precision == chosen["encoder"].precision]
            if found:
                chosen[key] = (same or found)[-1]
                break
    if len(chosen) < 2:
        built = "; ".join(sorted({f"sm_{e.compute_capability} TensorRT {e.tensorrt_version} {e.precision}"
                                  for e in engines}))
        raise EngineMismatchError(
            f"the TensorRT engines in {bundle.path} were built for {built}, but this machine has "
            f"sm_{compute_capability} and TensorRT {tensorrt_version}; an engine runs only where it was built. "
            f"Rebuild them here: {build_command(bundle, engines[-1].precision)}")
    return chosen


@dataclass
class _Graph:
    """A captured step: fixed buffers (addresses are frozen in the graph) and the executable graph."""

    graph: Any
    exec: Any
    inputs: dict[str, DeviceTensor]
    outputs: dict[str, DeviceTensor]


class _Engine:
    """One ICudaEngine and its execution context; picks the profile that fits each call's shapes."""

    def __init__(self, trt: Any, runtime: Any, bundle: Bundle, spec: EngineSpec, device: Device, graphs: bool):
        self.trt, self.device, self.spec = trt, device, spec
        engine = runtime.deserialize_cuda_engine(bundle.file(spec.file).read_bytes())
        if engine is None:
            raise EngineMismatchError(f"TensorRT {trt.__version__} could not load {spec.file} (see its log above); "
                                      f"rebuild the engines here: {build_command(bundle, spec.precision)}")
        self.engine = engine
        self.context = engine.create_execution_context()
        if self.context is None:
            raise BackendUnavailableError(f"TensorRT could not create an execution context for {spec.file} "
                                          "(out of GPU memory?); free GPU memory or build with a smaller --batch")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.dtypes = {n: numpy_dtype(engine.get_tensor_dtype(n), n, spec.file) for n in names}
        self.profiles = [{n: tuple(tuple(s) for s in engine.get_tensor_profile_shape(n, p)) for n in self.inputs}
                         for p in range(engine.num_optimization_profiles)]
        self.bundle = bundle
        self.profile: int | None = None
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.use_graphs = graphs
        self.graphs: dict[tuple, _Graph] = {}
        self.seen: set[tuple] = set()
        self.applied: tuple | None = None       # (profile, shapes) of the last plain execute_async_v3

    def _profile_for(self, shapes: dict[str, tuple[int, ...]]) -> int:
        for index, profile in enumerate(self.profiles):
            if all(all(lo <= d <= hi for lo, d, hi in zip(profile[n][0], shapes[n], profile[n][2])) for n in self.inputs):
                return index
        widest = {n: self.profiles[-1][n][2] for n in self.inputs} if self.profiles else {}
        raise OptionError(f"{self.spec.file} has no optimization profile for shapes {shapes} (largest: {widest}); "
                          f"caption fewer frames or beams at once, or rebuild with a larger --batch: "
                          f"{build_command(self.bundle, self.spec.precision)} --batch 1,16")

    def _set_shapes(self, profile: int, shapes: dict[str, tuple[int, ...]]) -> tuple:
        """Set the profile and input shapes on the context; returns the state a graph is tied to."""
        if profile != self.profile:
            self.profile, self.shapes = None, {}     # until the binding has taken the new profile
            self._trt(f"set_optimization_profile_async({profile})",
                      self.context.set_optimization_profile_async, profile, self.device.handle)
            self.profile = profile
        for name in self.inputs:
            if self.shapes.get(name) != shapes[name]:
                self.shapes.pop(name, None)
                self._trt(f"set_input_shape({name!r}, {shapes[name]})", self.context.set_input_shape, name, shapes[name])
                self.shapes[name] = shapes[name]
        return profile, tuple(shapes[n] for n in self.inputs)

    def _trt(self, what: str, call: Any, *args: Any) -> None:
        """A binding call on the hot path: False (the C++ bool) and RuntimeError (what pyCore.cpp raises,
        e.g. from set_optimization_profile_async) both become our error, naming the call and the fix."""
        try:
            ok = call(*args)
        except RuntimeError as exc:
            self._refused(what, f"{type(exc).__name__}: {exc}", exc)
        if not ok:
            self._refused(what, "its log says why")

    def _refused(self, what: str, why: str, cause: BaseException | None = None) -> None:
        raise BackendUnavailableError(
            f"TensorRT refused {what} on {self.spec.file} ({why}); if the bundle changed, rebuild: "
            f"{build_command(self.bundle, self.spec.precision)}",
            reason=f"TensorRT refused {what} on {self.spec.file} ({why})") from cause

    def run_bound(self, inputs: dict[str, DeviceTensor], outputs: dict[str, DeviceTensor]) -> None:
        """Execute on buffers the caller owns and keeps (the static step): nothing is copied in or out.
        Shapes and addresses that come a second time are captured into a CUDA graph and replayed."""
        shapes = {n: inputs[n].shape for n in self.inputs}
        state = self._set_shapes(self._profile_for(shapes), shapes)
        key = (*state, tuple(inputs[n].ptr for n in self.inputs), tuple(outputs[n].ptr for n in self.outputs))
        graph = self.graphs.get(key)
        if graph is not None and self.applied == state:
            self._launch(graph)
            return
        self._execute(inputs, outputs, state)  # this call's work, and the warm-up a capture needs
        if graph is None and self.use_graphs and key in self.seen and len(self.graphs) < MAX_GRAPHS:
            recorded = self._record()
            if recorded is not None:
                self.graphs[key] = _Graph(*recorded, {}, {})
        self.seen.add(key)

    def _launch(self, graph: _Graph) -> None:
        self.device.call(self.device.rt.cudaGraphLaunch(graph.exec, self.device.stream), "cudaGraphLaunch")

    def _record(self) -> tuple[Any, Any] | None:
        """Capture one execute_async_v3 with the addresses and shapes set (and applied) now: (graph,
        executable); None, with graphs off for this engine and the reason logged once, if that fails."""
        dev, rt = self.device, self.device.rt
        graph = None
        try:
            dev.call(rt.cudaStreamBeginCapture(dev.stream, rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal),
                     "cudaStreamBeginCapture")
            try:
                self._trt("execute_async_v3 (capture)", self.context.execute_async_v3, dev.handle)
            finally:
                # a capture whose enqueue failed still ends, and may still hand back a graph: destroyed below
                err, graph = rt.cudaStreamEndCapture(dev.stream)[:2]
            dev.call((err, graph), "cudaStreamEndCapture")
            return graph, dev.call(rt.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
        except (CudaError, BackendUnavailableError) as exc:
            if graph is not None:
                rt.cudaGraphDestroy(graph)
            log.warning("CUDA graph capture failed for %s (%s); running it without graphs", self.spec.file, exc)
            self.use_graphs = False
            return None

    def _execute(self, inputs: dict[str, DeviceTensor], outputs: dict[str, DeviceTensor], state: tuple) -> None:
        for name, tensor in (*inputs.items(), *outputs.items()):
            self._trt(f"set_tensor_address({name!r})", self.context.set_tensor_address, name, tensor.ptr)
        self.applied = None                     # unknown until the enqueue is accepted
        self._trt("execute_async_v3", self.context.execute_async_v3, self.device.handle)
        self.applied = state                    # this enqueue applies the profile and shapes on the device

    def run(self, feeds: dict[str, DeviceTensor]) -> dict[str, DeviceTensor]:
        for name in self.inputs:
            if feeds[name].dtype != self.dtypes[name]:
                raise BackendUnavailableError(f"{self.spec.file} wants {name!r} as {self.dtypes[name]}, got "
                                              f"{feeds[name].dtype}; rebuild the engines from this bundle")
        shapes = {n: feeds[n].shape for n in self.inputs}
        key = self._set_shapes(self._profile_for(shapes), shapes)
        graph = self.graphs.get(key)
        if graph is not None and self.applied == key:
            return self._replay(graph, feeds)
        out_shapes = {n: tuple(self.context.get_tensor_shape(n)) for n in self.outputs}
        if graph is None and self.use_graphs and key in self.seen and len(self.graphs) < MAX_GRAPHS:
            return self._capture(key, feeds, out_shapes)
        self.seen.add(key)
        outputs = {n: self.device.empty(out_shapes[n], self.dtypes[n]) for n in self.outputs}
        self._execute(feeds, outputs, key)      # also what makes the next replay of this key valid
        return outputs

    # ---- CUDA graphs ---------------------------------------------------------------------
    def _capture(self, key: tuple, feeds: dict[str, DeviceTensor], out_shapes: dict) -> dict[str, DeviceTensor]:
        """Second time these shapes come: warm up on fixed buffers (this call's real work), then capture."""
        dev = self.device
        fixed_in = {n: DeviceTensor(dev, dev.malloc(feeds[n].nbytes), 0, feeds[n].shape, feeds[n].dtype)
                    for n in self.inputs}
        fixed_out = {n: DeviceTensor(dev, dev.malloc(int(np.prod(s, dtype=np.int64)) * self.dtypes[n].itemsize), 0,
                                     s, self.dtypes[n]) for n, s in out_shapes.items()}
        for n in self.inputs:
            dev.copy(fixed_in[n].ptr, feeds[n].ptr, feeds[n].nbytes)
        self._execute(fixed_in, fixed_out, key)     # the warm-up TensorRT asks for before a capture
        recorded = self._record()
        outputs = self._copy_out(fixed_out)
        if recorded is None:
            for tensor in (*fixed_in.values(), *fixed_out.values()):
                dev.free(tensor.ptr)        # cudaFree waits for the copies above
        else:
            self.graphs[key] = _Graph(*recorded, fixed_in, fixed_out)
        return outputs

    def _replay(self, graph: _Graph, feeds: dict[str, DeviceTensor]) -> dict[str, DeviceTensor]:
        for n in self.inputs:
            self.device.copy(graph.inputs[n].ptr, feeds[n].ptr, feeds[n].nbytes)
        self._launch(graph)
        return self._copy_out(graph.outputs)

    def _copy_out(self, fixed: dict[str, DeviceTensor]) -> dict[str, DeviceTensor]:
        # the graph writes the same buffers every launch: hand out copies, or the next step's output
        # would overwrite this step's state while it is still the step's input
        outputs = {}
        for n, src in fixed.items():
            outputs[n] = self.device.empty(src.shape, src.dtype)
            self.device.copy(outputs[n].ptr, src.ptr, src.nbytes)
        return outputs

    def close(self) -> None:
        rt = self.device.rt
        for graph in self.graphs.values():
            rt.cudaGraphExecDestroy(graph.exec)
            rt.cudaGraphDestroy(graph.graph)
            for tensor in (*graph.inputs.values(), *graph.outputs.values()):
                self.device.free(tensor.ptr)
        self.graphs.clear()
        self.context = self.engine = None


class TensorRTBackend:
    name = "tensorrt"

    def __init__(self, bundle: Bundle, *, device: int | None = 0, cuda_graphs: bool = True):
        if not bundle.manifest.engines:     # say so before asking for TensorRT: it is the first fix
            select_engines(bundle, "", "")
        trt = load_tensorrt()
        check_tensorrt_version(trt)
        self.device = Device(load_cudart(), device or 0)
        try:
            specs = select_engines(bundle, self.device.compute_capability, trt.__version__)
            runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
            self._encoder = _Engine(trt, runtime, bundle, specs["encoder"], self.device, cuda_graphs)
            self._step = _Engine(trt, runtime, bundle, specs["step"], self.device, cuda_graphs)
            # decode() runs the TensorRT-shaped step through static_session() when its engine is here
            self.static_step = specs["step"].graph == "static_step"
            self._static = (StaticStep(self._step, bundle.manifest, self.device,
                                       f"rebuild the engines: {build_command(bundle, specs['step'].precision)} {{flag}}")
                            if self.static_step else None)
        except BaseException:
            self.device.close()
            raise
        manifest = bundle.manifest
        self.precision = specs["encoder"].precision
        self.describe = (f"TensorRT {trt.__version__}, sm_{self.device.compute_capability}, {self.precision} engines"
                         f"{', static step' if self.static_step else ''}{', CUDA graphs' if cuda_graphs else ''}")
        self._memory_names = list(manifest.memory)
        self._step_memory = [n for n in manifest.memory if n in manifest.decoder_step.inputs]
        self._state_by_output = {s.output: s.input for s in manifest.state}
        self._extras = [n for n in self._step.outputs if n != "logits" and n not in self._state_by_output]

    def _on_device(self, name: str, value: Any, engine: _Engine) -> DeviceTensor:
        if isinstance(value, DeviceTensor):
            return value
        return self.device.upload(np.asarray(value), engine.dtypes[name])

    def encode(self, pixel_values: np.ndarray) -> dict[str, DeviceTensor]:
        outputs = self._encoder.run({"pixel_values": self._on_device("pixel_values", pixel_values, self._encoder)})
        return {name: outputs[name] for name in self._memory_names}

    def step(self, input_ids, memory, state):
        values = {"input_ids": input_ids, **{n: memory[n] for n in self._step_memory}, **state}
        outputs = self._step.run({n: self._on_device(n, values[n], self._step) for n in self._step.inputs})
        host = self.device.download([outputs["logits"], *(outputs[n] for n in self._extras)])
        new_state = {self._state_by_output[name]: outputs[name] for name in self._state_by_output}
        return host[0], new_state, dict(zip(self._extras, host[1:]))

    def static_session(self, memory: dict[str, Any], rows_per_image: int, length: int) -> StaticSession:
        return self._static.session(memory, rows_per_image, length)

    def close(self) -> None:
        if getattr(self, "_step", None) is not None:
            if self._static is not None:
                self._static.close()
            self._encoder.close()
            self._step.close()
            self._encoder = self._step = None
            self.device.close()


def why_not(bundle: Bundle, device: int | None = 0) -> str | None:
    """Why backend="auto" cannot use TensorRT for this bundle here (None: it can), cheapest check first."""
    if not bundle.manifest.engines:
        return f"the bundle has no engines ({build_command(bundle)} makes them)"
    try:
        trt = load_tensorrt()
        check_tensorrt_version(trt)
        dev = Device(load_cudart(), device or 0)
    except BackendUnavailableError as exc:
        return exc.reason
    try:
        select_engines(bundle, dev.compute_capability, trt.__version__)
    except (EngineMismatchError, BackendUnavailableError) as exc:
        return str(exc)
    finally:
        dev.close()
    return None
