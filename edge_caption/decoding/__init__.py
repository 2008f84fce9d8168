"""One decoding loop for every family and backend: greedy and beam search with `generate()`'s semantics."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..errors import OptionError
from ..manifest import Manifest
from ..options import DecodeOptions
from .beam import beam_search
from .contract import DeviceLoopBackend, SearchPlan, StaticStepBackend, StepBackend
from .greedy import greedy_search
from .state import DecoderState
from .static import StaticDecoderState, cache_length


class Hypothesis(NamedTuple):
    token_ids: tuple[int, ...]
    score: float
    trace: np.ndarray | None = None     # the traced step extra, one row per token: [len(token_ids), ...]


Hypotheses = list[list[Hypothesis]]


def decode(backend: StepBackend, manifest: Manifest, memory: dict[str, np.ndarray], options: DecodeOptions,
           prompt_ids: tuple[int, ...] | None = None, trace: str | None = None) -> Hypotheses:
    """Decode every image whose encoder outputs are `memory`; per image, its hypotheses best first.

    `trace`: a step extra (e.g. "attention") to keep for every generated token, following the beams."""
    prompt = np.asarray(prompt_ids if prompt_ids is not None else manifest.tokenizer.prompt_ids, dtype=np.int64)
    eos = np.asarray(manifest.tokenizer.eos_token_ids, dtype=np.int64)
    if trace is not None and trace not in manifest.step_extras:
        raise ValueError(f"the {manifest.family} step has no {trace!r} output to trace "
                         f"(it has: {', '.join(manifest.step_extras) or 'none'})")
    images = next(iter(memory.values())).shape[0]
    if isinstance(backend, DeviceLoopBackend):
        why = backend.device_loop_reason(options, trace)
        if why is not None:
            raise OptionError(f"this backend decodes on its device only, and cannot here: {why}; use "
                              "backend='onnxruntime', or leave that option out")
        if options.num_beams == 1:      # greedy ignores these: one plan (and one set of graphs) for all values
            options = options.replace(length_penalty=1.0, early_stopping=False)
        plan = SearchPlan(int(images), options.num_beams, tuple(int(t) for t in prompt), tuple(int(t) for t in eos),
                          options)
        found = backend.decode_on_device(memory, plan)
    elif isinstance(backend, StaticStepBackend) and backend.static_step:
        length = cache_length(len(prompt), options.max_new_tokens)
        session = backend.static_session(memory, options.num_beams, length)
        state = StaticDecoderState(session, manifest, images, options.num_beams, length)
        found = _host_search(state, prompt, eos, options, trace)
    else:
        state = DecoderState(backend, manifest, memory, rows_per_image=options.num_beams)
        found = _host_search(state, prompt, eos, options, trace)
    return [[Hypothesis(ids, score, t) for ids, score, t in per_image] for per_image in found]


def _host_search(state, prompt, eos, options, trace):
    search = greedy_search if options.num_beams == 1 else beam_search
    return search(state, prompt, eos, options, trace)


__all__ = ["decode", "DecoderState", "Hypothesis", "Hypotheses"]
