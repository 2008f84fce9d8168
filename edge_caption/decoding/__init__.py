"""One decoding loop for every family and backend: greedy and beam search with `generate()`'s semantics."""
from __future__ import annotations

import numpy as np

from ..manifest import Manifest
from ..options import DecodeOptions
from .beam import beam_search
from .greedy import greedy_search
from .state import DecoderState, StepBackend

Hypotheses = list[list[tuple[tuple[int, ...], float]]]


def decode(backend: StepBackend, manifest: Manifest, memory: dict[str, np.ndarray], options: DecodeOptions,
           prompt_ids: tuple[int, ...] | None = None) -> Hypotheses:
    """Decode every image whose encoder outputs are `memory`; per image, its hypotheses best first."""
    prompt = np.asarray(prompt_ids if prompt_ids is not None else manifest.tokenizer.prompt_ids, dtype=np.int64)
    eos = np.asarray(manifest.tokenizer.eos_token_ids, dtype=np.int64)
    state = DecoderState(backend, manifest, memory, rows_per_image=options.num_beams)
    if options.num_beams == 1:
        return greedy_search(state, prompt, eos, options)
    return beam_search(state, prompt, eos, options)


__all__ = ["decode", "DecoderState", "Hypotheses"]
