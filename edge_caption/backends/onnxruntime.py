"""ONNX Runtime backend: the CPU fallback and the embedded default (CUDA EP when onnxruntime-gpu is there)."""
from __future__ import annotations

import os

import numpy as np

from ..bundle import Bundle
from ..errors import BackendUnavailableError, missing_extra


def _physical_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, bundle: Bundle, *, device: int | None = None, threads: int | None = None):
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
        try:
            self._encoder = ort.InferenceSession(str(bundle.file(manifest.encoder.file)), options, providers=providers)
            self._step = ort.InferenceSession(str(bundle.file(manifest.decoder_step.file)), options,
                                              providers=providers)
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

    def encode(self, pixel_values: np.ndarray) -> dict[str, np.ndarray]:
        values = self._encoder.run(self._memory_names, {"pixel_values": pixel_values})
        return dict(zip(self._memory_names, values))

    def step(self, input_ids, memory, state):
        feeds = {"input_ids": input_ids, **{n: memory[n] for n in self._step_memory}, **state}
        values = dict(zip(self._step_outputs, self._step.run(self._step_outputs, feeds)))
        new_state = {self._state_by_output[name]: values[name] for name in self._state_by_output}
        extras = {name: values[name] for name in self._extras}
        return values["logits"], new_state, extras

    def close(self) -> None:
        self._encoder = self._step = None
