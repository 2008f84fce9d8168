"""backend="torch-cuda": the bundle's `torch.export` programs on a CUDA GPU, where TensorRT is absent.

The programs (export targets "torch") are the encoder and the TensorRT-shaped step, traced once per
dtype (fp32 and fp16; a traced program's casts fix its dtype, so one is never cast to another). The
whole search runs on the device (`loop.py`, `search.py`: decoding/contract.py's device loop), so a
caption costs a few graph launches and one host read.

On a GPU the programs are compiled with Inductor (`torch.compile`: fused kernels; its on-disk cache
is keyed by the GPU and the torch version, so a compiled step is reused across processes), then
captured into CUDA graphs per shape: the encoder per image count, the decoding per `SearchPlan`,
both bounded in number (least recently used ones are released). A shape runs eagerly the first
time (compiling, warming up) and from graphs after. Timings come from CUDA events recorded between
the encoder's and the decoding's graphs, read with the result.
"""
from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from typing import Any

import numpy as np
import torch

from ...bundle import Bundle
from ...decoding.contract import SearchPlan
from ...decoding.static import cache_length, cache_shape
from ...errors import BackendUnavailableError, OptionError
from ..base import no_torch_programs, parse_version
from .compiled import Compiled
from .loop import CaptionLoop
from .programs import load_program

log = logging.getLogger(__name__)

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
MAX_LOOPS = 8           # decoding plans kept with their graphs and caches
MAX_ENCODERS = 4        # image counts kept with their encoder graphs


def _logits_and_caches(program):
    """The static step without its own top-k outputs, which the device search does not read: compiled,
    the log-softmax and top-k behind them are dead code and go."""
    def step(*args):
        out = program(*args)
        return (out[2], *out[3:])
    return step


class _Encoder:
    """The encoder at one image count: fixed input, and a graph once warmed up."""

    def __init__(self, images: int, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device):
        self.pixels = torch.zeros((images, *shape), dtype=dtype, device=device)
        self.staging = torch.empty((images, *shape), dtype=torch.float32, pin_memory=device.type == "cuda")
        self.uploaded = torch.cuda.Event() if device.type == "cuda" else None    # staging may be written again
        self.graph: torch.cuda.CUDAGraph | None = None
        self.outputs: tuple[torch.Tensor, ...] = ()
        self.runs = 0


class TorchCudaBackend:
    name = "torch-cuda"

    def __init__(self, bundle: Bundle, *, device: int | str | None = 0, dtype: str = "float16",
                 cuda_graphs: bool = True, compile: bool | None = None, inductor: dict[str, Any] | None = None):
        """`device`: a GPU index; "cpu" runs the fp32 programs on the CPU, which is how the backend's
        logic is tested on machines without a GPU. `dtype`: one the bundle's programs were traced in.
        `compile`: Inductor-compile the programs and the search (default: on a GPU), with `inductor`'s
        options (torch.compile's `options`; for experiments, e.g. {"combo_kernels": True})."""
        m = bundle.manifest
        if m.torch_programs is None:
            raise no_torch_programs(bundle)
        programs = m.torch_programs
        if parse_version(torch.__version__) < parse_version(programs.torch_version):
            raise BackendUnavailableError(f"the programs in {bundle.path} were saved by torch {programs.torch_version}; "
                                          f"this is torch {torch.__version__}: pip install 'torch>={programs.torch_version}'",
                                          reason=f"torch {torch.__version__} is older than the programs' "
                                                 f"torch {programs.torch_version}")
        if dtype not in programs.encoder:
            raise OptionError(f"{bundle.path} has torch programs in {', '.join(programs.encoder)}, not {dtype!r}; "
                              "pass one of those as dtype")
        if device == "cpu":
            self.device = torch.device("cpu")
        else:
            if not torch.cuda.is_available():
                raise BackendUnavailableError("torch sees no CUDA GPU (torch.cuda.is_available() is False); "
                                              "use backend='onnxruntime', or install a CUDA build of torch",
                                              reason="torch sees no CUDA GPU")
            self.device = torch.device("cuda", device or 0)
        cuda = self.device.type == "cuda"
        self.dtype = DTYPES[dtype]
        self.use_graphs = cuda_graphs and cuda
        self.manifest = m
        self._encoder = self._load(bundle, programs.encoder[dtype])
        self._step = _logits_and_caches(self._load(bundle, programs.static_step[dtype]))
        self.compile = (inductor or {}) if (compile if compile is not None else cuda) else None
        if self.compile is not None:
            self._encoder = Compiled(self._encoder, options=self.compile)
            self._step = Compiled(self._step, options=self.compile)
        self._memory_names = list(m.memory)
        self._step_memory = [n for n in m.static_step.inputs if n in m.memory]
        self._encoders: OrderedDict[int, _Encoder] = OrderedDict()
        self._loops: OrderedDict[SearchPlan, CaptionLoop] = OrderedDict()
        # CUDA events: where a caption's device time goes, read with the result (no extra sync)
        self._events = {name: torch.cuda.Event(enable_timing=True) for name in ("start", "encode", "encoded")} \
            if cuda else None
        self._preprocessed = False     # preprocess_frames ran for the batch encode() takes next
        self._timed_preprocess = False  # ... and for the batch timings() describes
        self._preprocessor = None
        self.last_loop: CaptionLoop | None = None
        gpu = torch.cuda.get_device_name(self.device) if cuda else "CPU"
        compiled = "compiled" + (f" {self.compile}" if self.compile else "")
        extras = [x for x, on in ((compiled, self.compile is not None),
                                  ("CUDA graphs", self.use_graphs)) if on]
        self.describe = f"torch {torch.__version__}, {gpu}, {dtype}" + "".join(f", {x}" for x in extras)

    def _load(self, bundle: Bundle, file: str):
        try:
            return load_program(bundle.file(file), self.device)
        except Exception as exc:
            raise BackendUnavailableError(f"torch {torch.__version__} cannot load {file} from {bundle.path}: "
                                          f"{type(exc).__name__}: {exc}; re-export the bundle with this torch") from exc

    def on_device(self):
        """The context every call runs in: this backend's GPU, whatever the caller's current one is."""
        return torch.cuda.device(self.device) if self.device.type == "cuda" else contextlib.nullcontext()

    # ---- preprocessing (backends/base.py's DevicePreprocessing) ---------------------------------
    @torch.inference_mode()
    def preprocess_frames(self, frames: list[np.ndarray], color: str) -> torch.Tensor:
        """uint8 [H,W,3] frames -> float32 pixel values on the device (preprocess.py says how)."""
        with self.on_device():
            if self._preprocessor is None:
                from .preprocess import DevicePreprocessor

                self._preprocessor = DevicePreprocessor(self.manifest.preprocess, self.device, torch.float32)
            if self._events is not None:
                self._events["start"].record()
            self._preprocessed = True
            return self._preprocessor(frames, color)

    # ---- encoding ------------------------------------------------------------------------------
    @torch.inference_mode()
    def encode(self, pixel_values: np.ndarray | torch.Tensor) -> dict[str, torch.Tensor]:
        """float32 [B,3,H,W] pixel values (numpy, or a tensor already on this device) -> the memory
        tensors, on the device. With graphs they are the encoder graph's fixed outputs: valid until
        the next encode() of as many images."""
        with self.on_device():
            images = int(pixel_values.shape[0])
            enc = self._encoder_for(images, tuple(pixel_values.shape[1:]))
            if self._events is not None:
                if not self._preprocessed:
                    self._events["start"].record()
                self._events["encode"].record()
            self._timed_preprocess, self._preprocessed = self._preprocessed, False
            if isinstance(pixel_values, torch.Tensor):
                enc.pixels.copy_(pixel_values, non_blocking=True)
            else:
                if enc.uploaded is not None:
                    enc.uploaded.synchronize()      # the last upload from it is done (long since, after a caption)
                enc.staging.numpy()[...] = pixel_values
                enc.pixels.copy_(enc.staging, non_blocking=True)
                if enc.uploaded is not None:
                    enc.uploaded.record()
            if enc.graph is not None:
                enc.graph.replay()
                outputs = enc.outputs
            elif self.use_graphs and enc.runs >= 1 and self._capture_encoder(enc):
                enc.graph.replay()
                outputs = enc.outputs
            else:
                outputs = self._encoder(enc.pixels)
            enc.runs += 1
            if self._events is not None:
                self._events["encoded"].record()
            return dict(zip(self._memory_names, outputs))

    def _capture_encoder(self, enc: _Encoder) -> bool:
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                enc.outputs = tuple(self._encoder(enc.pixels))
        except Exception as exc:      # torch raises many kinds; the encoder still runs uncaptured
            log.warning("CUDA graph capture of the encoder failed (%s: %s); encoding without a graph",
                        type(exc).__name__, str(exc)[:200])
            self.use_graphs = False
            return False
        enc.graph = graph
        return True

    def _encoder_for(self, images: int, shape: tuple[int, ...]) -> _Encoder:
        enc = self._encoders.get(images)
        if enc is None or tuple(enc.pixels.shape[1:]) != shape:
            enc = self._encoders[images] = _Encoder(images, shape, self.dtype, self.device)
            while len(self._encoders) > MAX_ENCODERS:
                self._encoders.popitem(last=False)
        self._encoders.move_to_end(images)
        return enc

    # ---- decoding (decoding/contract.py's DeviceLoopBackend) ----------------------------------
    def device_loop_reason(self, options, trace: str | None) -> str | None:
        if trace is not None:
            return f"tracing {trace!r} per token is done by the host loop"
        return None

    @torch.inference_mode()
    def decode_on_device(self, memory: dict[str, Any], plan: SearchPlan):
        with self.on_device():
            tensors = [self._as_tensor(memory[n]) for n in self._step_memory]
            loop = self._loops.get(plan)
            if loop is None:
                length = cache_length(len(plan.prompt), plan.options.max_new_tokens)
                shapes = [cache_shape(s, plan.images * plan.beams, length) for s in self.manifest.state]
                loop = self._loops[plan] = CaptionLoop(self._step, plan, tensors, shapes, self.dtype,
                                                       graphs=self.use_graphs, compile=self.compile)
                while len(self._loops) > MAX_LOOPS:
                    self._loops.popitem(last=False)
            self._loops.move_to_end(plan)
            self.last_loop = loop
            return loop.run(tensors)

    def timings(self) -> dict[str, float] | None:
        """Device time of the last caption batch in ms: preprocess (when it ran here), encode, decode
        (up to the result's arrival on the host), from CUDA events; None on a CPU."""
        if self._events is None or self.last_loop is None:
            return None
        e = self._events
        found = {"encode": e["encode"].elapsed_time(e["encoded"]),
                 "decode": e["encoded"].elapsed_time(self.last_loop.ready)}     # complete: the result was read
        if self._timed_preprocess:
            found["preprocess"] = e["start"].elapsed_time(e["encode"])
        return found

    def _as_tensor(self, value: Any) -> torch.Tensor:
        if isinstance(value, torch.Tensor):
            return value
        return torch.from_numpy(np.asarray(value)).to(self.device, self.dtype)

    def close(self) -> None:
        self._loops.clear()
        self._encoders.clear()
        self._encoder = self._step = None
        self.last_loop = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
