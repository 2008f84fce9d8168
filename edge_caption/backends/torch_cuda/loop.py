"""A caption batch's whole decoding on the device: the static step driven by `search.py`.

The steps of one `SearchPlan` are cut into chunks: the first runs up to the first step after which
the search may stop (no EOS before min_new_tokens), the others `steps_per_read` steps each. After
each chunk the host reads the search state in one copy (`done`, and with it the result), so a
caption costs one host read when it runs to the end, and a few when it may stop early.

With CUDA graphs, the first run of a plan is eager (it compiles and warms up); the second captures
every chunk into a graph on fixed buffers (the search state, the first step's inputs, the memory the
steps read) and replays them, and so does every run after. Each chunk ends by copying its outputs (the next ids, beam index
and caches) into one fixed set, the next chunk's inputs; graphs of one plan share a memory pool and
always replay in capture order, as torch requires.
Without graphs (on a CPU, in the tests) the same chunk code runs eagerly.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np
import torch

from ...decoding.contract import SearchPlan
from .search import hypotheses, make_search, result_views

STEPS_PER_READ = 4
log = logging.getLogger(__name__)


class CaptionLoop:
    """The device state, chunks and graphs of one plan; `run(memory)` decodes one batch."""

    def __init__(self, step: Callable[..., Any], plan: SearchPlan, memory: list[torch.Tensor],
                 cache_shapes: list[tuple[int, ...]], dtype: torch.dtype, *, graphs: bool,
                 compile: dict[str, Any] | None = None, steps_per_read: int = STEPS_PER_READ):
        """`step`: the static step returning (logits, *present) (backend.py drops its own top-k);
        `compile`: None, or the Inductor options the search core is compiled with."""
        self.step, self.plan, self.graphs = step, plan, graphs
        device = memory[0].device
        rows = plan.images * plan.beams
        prompt_len = len(plan.prompt)
        self.search = make_search(plan, device, compile)
        self.memory = list(memory)        # what the steps read; the graphs keep what they were captured with
        self.zeros = torch.zeros(rows, dtype=torch.float32, device=device)
        self.prompt_ids = [torch.full((rows, 1), t, dtype=torch.int64, device=device) for t in plan.prompt]
        self.arange = torch.arange(rows, dtype=torch.int64, device=device)
        # one tensor per position, not views of one: a compiled step copies inputs that are not 16-byte aligned
        self.positions = [torch.full((1,), s, dtype=torch.int64, device=device) for s in range(plan.steps)]
        # the caches before the first step: read, never written (the step is functional)
        self.empty = [torch.zeros(shape, dtype=dtype, device=device) for shape in cache_shapes]
        first = min(plan.steps, prompt_len - 1 + plan.first_possible_stop())
        self.bounds = [0, first] + list(range(first + steps_per_read, plan.steps, steps_per_read))
        if self.bounds[-1] != plan.steps:
            self.bounds.append(plan.steps)
        pinned = device.type == "cuda"
        self.host = torch.empty(self.search.arena.shape, dtype=torch.uint8, pin_memory=pinned)
        self.host_views = result_views(self.host, plan)
        self.ready = torch.cuda.Event(enable_timing=True) if pinned else None     # the result is on the host
        self.carry: tuple | None = None       # (ids, beam_index, caches) from one chunk to the next
        self.captured: list[torch.cuda.CUDAGraph] = []
        self.runs = 0
        self.reads = 0            # host reads of the last run

    @property
    def chunks(self) -> int:
        return len(self.bounds) - 1

    def run(self, memory: list[torch.Tensor]) -> list[list[tuple[tuple[int, ...], float, None]]]:
        if self.captured:
            # the graphs read the memory they were captured with: the encoder graph's own outputs
            # when the encoder is captured too (nothing to copy), else a copy goes there
            for fixed, now in zip(self.memory, memory):
                if fixed.data_ptr() != now.data_ptr():
                    fixed.copy_(now, non_blocking=True)
        else:
            self.memory = list(memory)
        if self.graphs and self.runs >= 1 and not self.captured:
            try:
                self._capture()
            except Exception as exc:      # torch raises many kinds; the eager chunks still decode right
                log.warning("CUDA graph capture failed for %s (%s: %s); decoding without graphs",
                            self.plan, type(exc).__name__, str(exc)[:200])
                self.graphs, self.captured = False, []
        self.runs += 1
        self.reads = 0
        for c in range(self.chunks):
            if self.captured:
                self.captured[c].replay()
            else:
                self._chunk(c)
            state = self._read()
            if bool(state["done"][0]) or c == self.chunks - 1:
                return hypotheses(self.plan, state)
        raise AssertionError("unreachable: the last chunk ends the search")

    def _chunk(self, c: int) -> None:
        """The work of chunk c as tensor operations: captured, or run as it is."""
        plan = self.plan
        prompt_len = len(plan.prompt)
        if c == 0:
            self.search.reset()
            ids, beam_index, caches = self.prompt_ids[0], self.arange, self.empty
        else:
            ids, beam_index, caches = self.carry
        for s in range(self.bounds[c], self.bounds[c + 1]):
            logits, *caches = self.step(ids, self.positions[s], beam_index, self.zeros, *self.memory, *caches)
            if s < prompt_len - 1:                   # a prompt goes in one token a step
                ids, beam_index = self.prompt_ids[s + 1], self.arange
            else:
                ids, beam_index = self.search.select(s - (prompt_len - 1), logits)
        self.search.pack()
        if c < self.chunks - 1:
            # one fixed set carries every chunk's outputs to the next (a set per chunk would hold a
            # cache per chunk): the chunk read it in its first step, so overwriting it now is safe
            if self.carry is None:
                self.carry = (ids.clone(), beam_index.clone(), [t.clone() for t in caches])
            else:
                for fixed, now in zip((self.carry[0], self.carry[1], *self.carry[2]), (ids, beam_index, *caches)):
                    fixed.copy_(now)

    def _capture(self) -> None:
        pool = None
        graphs = []
        for c in range(self.chunks):
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                self._chunk(c)
            pool = graph.pool()
            graphs.append(graph)
        self.captured = graphs

    def _read(self) -> dict[str, np.ndarray]:
        """The whole search state on the host, in one copy: the loop's only read of device values."""
        self.reads += 1
        self.host.copy_(self.search.arena, non_blocking=self.ready is not None)
        if self.ready is not None:
            self.ready.record()
            self.ready.synchronize()
        return {name: view.numpy() for name, view in self.host_views.items()}
