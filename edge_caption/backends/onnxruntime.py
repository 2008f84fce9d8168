"""ONNX Runtime backend: the CPU fallback and the embedded default (CUDA EP when onnxruntime-gpu is there)."""
from __future__ import annotations

import os

import numpy as np

from ..bundle import Bundle
from ..decoding.static import cache_shape
from ..errors import BackendUnavailableError, missing_extra


def _physical_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, bundle: Bundle, *, device: int | None = None, threads: int | None = None,
                 static_step: bool = False):
        """`static_step`: decode with the bundle's TensorRT-shaped step instead of the dynamic one
        (slower on a CPU, where the dynamic step reads fewer cache positions; it proves the graph
        TensorRT gets gives `generate()`'s tokens)."""
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise missing_extra("onnxruntime", "onnx") from exc
        manifest = bundle.manifest
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or _physical_cores()
        options.log_severity_level = 3
        providers: list = ["CPUExecutionProvider"]
        if device is not None and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device}))
        if static_step and manifest.static_step is None:
            raise BackendUnavailableError(f"{bundle.path} has no TensorRT-shaped step; re-export it with "
                                          "--targets onnx,tensorrt")
        step = manifest.static_step if static_step else manifest.decoder_step
        try:
            self._encoder = ort.InferenceSession(str(bundle.file(manifest.encoder.file)), options, providers=providers)
            self._step = ort.InferenceSession(str(bundle.file(step.file)), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise BackendUnavailableError(
                f"ONNX Runtime {ort.__version__} cannot load the graphs of {bundle.path}: {exc}; "
                "upgrade onnxruntime (pip install -U onnxruntime) or re-export the bundle"
            ) from exc
        self.providers = self._step.get_providers()
        self._memory_names = list(manifest.memory)
        self._step_memory = [n for n in manifest.memory if n in manifest.decoder_step.inputs]
        self._step_outputs = [o.name for o in self._step.get_outputs()]
        self._state_by_output = {s.output: s.input for s in manifest.state}
        self._extras = [n for n in self._step_outputs if n != "logits" and n not in self._state_by_output]
        self._manifest = manifest
        self.static_step = static_step      # decode() asks static_session() for its caches when True

    def encode(self, pixel_values: np.ndarray) -> dict[str, np.ndarray]:
        values = self._encoder.run(self._memory_names, {"pixel_values": pixel_values})
        return dict(zip(self._memory_names, values))

    def step(self, input_ids, memory, state):
        feeds = {"input_ids": input_ids, **{n: memory[n] for n in self._step_memory}, **state}
        values = dict(zip(self._step_outputs, self._step.run(self._step_outputs, feeds)))
        new_state = {self._state_by_output[name]: values[name] for name in self._state_by_output}
        extras = {name: values[name] for name in self._extras}
        return values["logits"], new_state, extras

    def static_session(self, memory: dict[str, np.ndarray], rows_per_image: int, length: int) -> "_StaticSession":
        return _StaticSession(self._step, self._manifest, memory, rows_per_image, length)

    def close(self) -> None:
        self._encoder = self._step = None


class _StaticSession:
    """The static step's caches as numpy arrays: each step's outputs are the next step's inputs."""

    def __init__(self, session, manifest, memory: dict[str, np.ndarray], rows_per_image: int, length: int):
        self.session, self.top_k, self.length = session, manifest.static_step.top_k, length
        self.memory = {n: memory[n] for n in manifest.static_step.inputs if n in memory}
        rows = next(iter(memory.values())).shape[0] * rows_per_image
        self.cache = {s.input: np.zeros(cache_shape(s, rows, length), np.float32) for s in manifest.state}
        self.present = {s.output: s.input for s in manifest.state}
        self.outputs = list(manifest.static_step.outputs)
        self.last: dict[str, np.ndarray] = {}

    def run(self, input_ids, position, beam_index, beam_scores) -> None:
        feeds = {"input_ids": input_ids, "position": np.array([position], np.int64), "beam_index": beam_index,
                 "beam_scores": beam_scores, **self.memory, **self.cache}
        self.last = dict(zip(self.outputs, self.session.run(self.outputs, feeds)))
        self.cache = {name: self.last[out] for out, name in self.present.items()}

    def top(self):
        return self.last["topk_scores"], self.last["topk_ids"]

    def logits(self):
        return self.last["logits"]

    def keep(self, images) -> None:
        self.memory = {n: np.take(v, images, axis=0) for n, v in self.memory.items()}
