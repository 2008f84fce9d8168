"""backend="torch-cuda": the bundle's `torch.export` programs on a CUDA GPU, where TensorRT is absent.

The programs (export targets "torch") are the encoder and the TensorRT-shaped step, traced once per
dtype (fp32 and fp16; a traced program's casts fix its dtype, so one is never cast to another). The
step is the contract TensorRT gets: a max-length cache written at the position, the beam reorder as
a gather inside the step, cross-attention K/V once per image, log-softmax + beam scores + per-row
top-k inside; per step the host sends the ids, position, beam index and beam scores and reads back
top_k candidates per row.

CUDA graphs: a step whose (rows, images, cache length) came before is captured into a
`torch.cuda.CUDAGraph` on fixed buffers and replayed, with the new cache copied back into the fixed
cache buffer inside the graph (the exported step is functional, so its outputs land in the graph's
own pool; that copy is the price of replaying an unmodified program). Graphs with the same image
count share one fixed memory buffer; they outlive a caption batch. This module is the only runtime
code that imports torch, and only when the backend is chosen.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ...bundle import Bundle
from ...decoding.static import cache_shape
from ...errors import BackendUnavailableError, OptionError
from ..base import no_torch_programs, parse_version
from .programs import load_program

log = logging.getLogger(__name__)

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
MAX_GRAPHS = 32




@dataclass
class _CapturedStep:
    """A captured step: its fixed small inputs and caches, the shared memory buffers, its outputs."""

    graph: Any
    small: list[torch.Tensor]
    memory: "_FixedMemory"
    caches: list[torch.Tensor]
    outputs: tuple[torch.Tensor, ...]


@dataclass
class _FixedMemory:
    """The image memory every graph of one image count reads; `session` says whose it holds."""

    tensors: list[torch.Tensor]
    session: int = -1


class TorchCudaBackend:
    name = "torch-cuda"
    static_step = True                  # decode() runs the static step through static_session()

    def __init__(self, bundle: Bundle, *, device: int | str | None = 0, dtype: str = "float16",
                 cuda_graphs: bool = True):
        """`device`: a GPU index; "cpu" runs the fp32 programs on the CPU, which is how the backend's
        logic is tested on machines without a GPU. `dtype`: one the bundle's programs were traced in."""
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
        self.dtype = DTYPES[dtype]
        self.use_graphs = cuda_graphs and self.device.type == "cuda"
        self.manifest = m
        self._encoder = self._load(bundle, programs.encoder[dtype])
        self._step = self._load(bundle, programs.static_step[dtype])
        self._memory_names = list(m.memory)
        self._step_memory = [n for n in m.static_step.inputs if n in m.memory]
        self._graphs: dict[tuple, _CapturedStep] = {}
        self._memory: dict[int, _FixedMemory] = {}
        self._seen: set[tuple] = set()
        self._sessions = 0
        gpu = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "CPU"
        self.describe = f"torch {torch.__version__}, {gpu}, {dtype}{', CUDA graphs' if self.use_graphs else ''}"

    def _load(self, bundle: Bundle, file: str):
        try:
            return load_program(bundle.file(file), self.device)
        except Exception as exc:
            raise BackendUnavailableError(f"torch {torch.__version__} cannot load {file} from {bundle.path}: "
                                          f"{type(exc).__name__}: {exc}; re-export the bundle with this torch") from exc

    def on_device(self):
        """The context every call runs in: this backend's GPU, whatever the caller's current one is."""
        return torch.cuda.device(self.device) if self.device.type == "cuda" else contextlib.nullcontext()

    @torch.inference_mode()
    def encode(self, pixel_values: np.ndarray) -> dict[str, torch.Tensor]:
        with self.on_device():
            pixels = torch.from_numpy(np.ascontiguousarray(pixel_values)).to(self.device, self.dtype)
            return dict(zip(self._memory_names, self._encoder(pixels)))

    def static_session(self, memory: dict[str, Any], rows_per_image: int, length: int) -> "TorchStaticSession":
        self._sessions += 1
        return TorchStaticSession(self, [self._as_tensor(memory[n]) for n in self._step_memory], rows_per_image,
                                  length, self._sessions)

    def _as_tensor(self, value: Any) -> torch.Tensor:
        if isinstance(value, torch.Tensor):
            return value
        return torch.from_numpy(np.asarray(value)).to(self.device, self.dtype)

    def close(self) -> None:
        self._graphs.clear()
        self._memory.clear()
        self._encoder = self._step = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


class TorchStaticSession:
    """One caption batch: the caches as tensors, or inside a captured graph's fixed buffers."""

    def __init__(self, backend: TorchCudaBackend, memory: list[torch.Tensor], rows_per_image: int, length: int,
                 number: int):
        self.backend, self.memory, self.number, self.length = backend, memory, number, length
        self.top_k = backend.manifest.static_step.top_k
        self.images = memory[0].shape[0] if memory else 0
        rows = self.images * rows_per_image
        with backend.on_device():
            self.caches = [torch.zeros(cache_shape(s, rows, length), dtype=backend.dtype, device=backend.device)
                           for s in backend.manifest.state]
        self.rows = rows
        self.owner: _CapturedStep | None = None    # the graph whose fixed buffers hold the current cache
        self.last: tuple[torch.Tensor, ...] = ()

    @staticmethod
    def _host(ids, position, beam_index, beam_scores) -> list[torch.Tensor]:
        """The step's small inputs as CPU tensors (the prompt's and the beam search's, from numpy)."""
        return [torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64)), torch.tensor([position], dtype=torch.int64),
                torch.from_numpy(np.ascontiguousarray(beam_index, dtype=np.int64)),
                torch.from_numpy(np.ascontiguousarray(beam_scores, dtype=np.float32))]

    @torch.inference_mode()
    def run(self, input_ids, position, beam_index, beam_scores) -> None:
        b = self.backend
        with b.on_device():
            n = len(beam_index)
            caches = self.owner.caches if self.owner is not None else self.caches
            key = (n, self.images, self.length)
            graph = b._graphs.get(key) if n == self.rows else None
            if graph is not None:
                self._replay(graph, input_ids, position, beam_index, beam_scores, caches)
                return
            small = [t.to(b.device) for t in self._host(input_ids, position, beam_index, beam_scores)]
            self.beam_scores = small[3]
            out = b._step(*small, *self.memory, *caches)
            self.last, self.caches, self.owner, self.rows = out[:3], list(out[3:]), None, n
            if b.use_graphs and n == len(caches[0]) and key in b._seen and len(b._graphs) < MAX_GRAPHS:
                self._capture(key, small)
            b._seen.add(key)

    def _capture(self, key: tuple, small: list[torch.Tensor]) -> None:
        """The second time a shape comes, record it on fixed buffers (this step's result is already in
        self.caches: the capture itself runs nothing)."""
        b = self.backend
        fixed_memory = b._memory.get(self.images)
        if fixed_memory is None:
            fixed_memory = b._memory[self.images] = _FixedMemory([t.clone() for t in self.memory], self.number)
        elif fixed_memory.session != self.number:
            for buffer, current in zip(fixed_memory.tensors, self.memory):
                buffer.copy_(current)
            fixed_memory.session = self.number
        inputs = [t.clone() for t in small]
        fixed = [t.clone() for t in self.caches]
        try:
            side = torch.cuda.Stream()     # warm-up on a side stream, as CUDA graph capture asks;
            side.wait_stream(torch.cuda.current_stream())      # the step is functional: nothing changes
            with torch.cuda.stream(side):
                b._step(*inputs, *fixed_memory.tensors, *fixed)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out = b._step(*inputs, *fixed_memory.tensors, *fixed)
                for buffer, present in zip(fixed, out[3:]):
                    buffer.copy_(present)
        except Exception as exc:   # torch raises RuntimeError subclasses of many kinds here
            log.warning("CUDA graph capture failed for %s (%s); running without graphs", key, exc)
            b.use_graphs = False
            return
        entry = _CapturedStep(graph, inputs, fixed_memory, fixed, tuple(out[:3]))
        b._graphs[key] = entry
        self.owner = entry

    def _replay(self, graph: _CapturedStep, ids, position, beam_index, beam_scores, caches) -> None:
        if self.owner is not graph:
            for buffer, current in zip(graph.caches, caches):
                buffer.copy_(current)
        if graph.memory.session != self.number:
            for buffer, current in zip(graph.memory.tensors, self.memory):
                buffer.copy_(current)
            graph.memory.session = self.number
        for buffer, value in zip(graph.small, self._host(ids, position, beam_index, beam_scores)):
            buffer.copy_(value, non_blocking=True)
        graph.graph.replay()
        self.owner, self.last, self.beam_scores = graph, graph.outputs, graph.small[3]

    def processes(self, options) -> bool:
        # repetition penalty and min length are two tensor ops here; n-gram blocking is a per-row
        # search over the history (generate() runs it on the host too): those steps read the logits
        return options.no_repeat_ngram_size == 0

    @torch.inference_mode()
    def processed_top(self, history, options, prompt_len, eos_ids, greedy):
        """generate()'s processor order on the device: see decoding/static.py's StaticSession."""
        dev = self.backend.device
        with self.backend.on_device():
            logits = self.last[2].float()
            scores = logits.clone() if greedy else torch.log_softmax(logits, dim=-1)
            if options.repetition_penalty != 1.0:
                ids = torch.from_numpy(np.ascontiguousarray(history, dtype=np.int64)).to(dev)
                valid = ids < scores.shape[1]       # ids past the LM head (a BLIP prompt's) are never penalised
                seen = torch.zeros(scores.shape, dtype=torch.uint8, device=dev).scatter_reduce_(
                    1, torch.where(valid, ids, 0), valid.to(torch.uint8), reduce="amax").bool()
                penalty = torch.tensor(options.repetition_penalty, dtype=torch.float32, device=dev)
                scores = torch.where(seen, torch.where(scores < 0, scores * penalty, scores / penalty), scores)
            if history.shape[1] - prompt_len < options.min_new_tokens:
                scores[:, torch.from_numpy(np.asarray(eos_ids, dtype=np.int64)).to(dev)] = float("-inf")
            if greedy:
                token = scores.argmax(dim=-1, keepdim=True)
                return torch.log_softmax(scores, dim=-1).gather(1, token).cpu().numpy(), token.cpu().numpy()
            scores = scores + self.beam_scores.unsqueeze(1)
            values, ids = torch.topk(scores, self.top_k, dim=-1, largest=True, sorted=True)
            return values.cpu().numpy(), ids.cpu().numpy()

    def top(self) -> tuple[np.ndarray, np.ndarray]:
        return self.last[0].float().cpu().numpy(), self.last[1].cpu().numpy()

    def logits(self) -> np.ndarray:
        return self.last[2].float().cpu().numpy()

    def keep(self, images: np.ndarray) -> None:
        index = torch.from_numpy(np.asarray(images, dtype=np.int64)).to(self.backend.device)
        self.memory = [t.index_select(0, index) for t in self.memory]
        self.images = len(images)
