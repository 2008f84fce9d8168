"""Beam search, token for token what `generate(num_beams=k)` returns (transformers 5.x's vectorised search).

Per step: the decoder step, log-softmax (numpy), the history-dependent processors and per-row top-k
(vocabulary-wide), then the bookkeeping on k candidates per row. The last three are done by a `Beams`
core: the Cython one (`edge_caption._beam`) when it is built, the Python reference otherwise
(`core.py` chooses; `EDGE_CAPTION_BEAM=python|cython` forces one). Images whose result can no longer
change are dropped from the batch (Hugging Face keeps computing them; the outcome is identical).
"""
from __future__ import annotations

import numpy as np

from ..options import DecodeOptions
from .core import beams_class
from .processors import log_softmax, needs_full_rows
from .state import DecoderState
from .static import take_step


def _gather(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """values [B, k, ...] gathered along axis 1 by index [B, m]."""
    return np.take_along_axis(values, index.reshape(*index.shape, *([1] * (values.ndim - 2))), axis=1)


class _Trace:
    """A step extra (e.g. attention) that follows its tokens: gathered from the same source beam, merged
    into the finished hypotheses by the same picks as the token ids."""

    def __init__(self, name: str, max_new_tokens: int):
        self.name, self.max_new = name, max_new_tokens
        self.running = self.finished = None      # [B, nb, generated, ...] / [B, nb, max new tokens, ...]

    def follow(self, now: np.ndarray, picks: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        src_beam, nxt, pick = picks
        b, nb = nxt.shape
        now = now.reshape(b, nb, 1, -1)
        if self.running is None:
            self.running = np.zeros((b, nb, 0, now.shape[-1]), now.dtype)
            self.finished = np.zeros((b, nb, self.max_new, now.shape[-1]), now.dtype)
        top = np.concatenate([_gather(self.running, src_beam), _gather(now, src_beam)], axis=2)
        self.running = _gather(top, nxt)
        padded = np.zeros((b, src_beam.shape[1], *self.finished.shape[2:]), self.finished.dtype)
        padded[:, :, : top.shape[2]] = top
        self.finished = _gather(np.concatenate([self.finished, padded], axis=1), pick)

    def keep(self, images: np.ndarray) -> None:
        self.running, self.finished = self.running[images], self.finished[images]


def beam_search(state: DecoderState, prompt: np.ndarray, eos_ids: np.ndarray, options: DecodeOptions,
                trace: str | None = None) -> list[list[tuple[tuple[int, ...], float, np.ndarray | None]]]:
    """Returns, per image, `num_return_sequences` (token_ids, score, trace) hypotheses, best first."""
    beams = beams_class()(state.active, np.asarray(prompt, dtype=np.int64), np.asarray(eos_ids, dtype=np.int64),
                          options)
    traced = _Trace(trace, options.max_new_tokens) if trace is not None else None
    results: list = [[] for _ in range(state.active)]
    step_ids = beams.history
    kc = beams.keep_k
    while True:
        full = needs_full_rows(options, beams.cur_len - len(prompt))
        processors = (beams.history, options, len(prompt), eos_ids, False) if full else None
        top, logits = take_step(state, step_ids, kc, processors, beams.running_scores)
        if top is not None:     # the step took the per-row top-k itself: only k candidates per row came back
            shape = (state.active, options.num_beams, kc)
            source_rows, stopped = beams.advance(np.ascontiguousarray(top[0][:, :kc]).reshape(shape),
                                                 np.ascontiguousarray(top[1][:, :kc]).reshape(shape))
        else:
            logprobs = log_softmax(logits)
            beams.process(logprobs)
            beams.candidates(logprobs)
            source_rows, stopped = beams.advance()
        if traced is not None:
            traced.follow(state.extras[trace], beams.picks)
        state.reorder(source_rows)
        if beams.n_stopped:
            for i in np.flatnonzero(stopped):
                results[state.images[i]] = [
                    (ids, score, None if traced is None else traced.finished[i, j, : len(ids)])
                    for j, (ids, score) in enumerate(beams.hypotheses(int(i)))
                ]
            if beams.n_stopped == state.active:
                return results
            keep = np.flatnonzero(~stopped)
            state.keep(keep)
            beams.keep(keep)
            if traced is not None:
                traced.keep(keep)
        step_ids = beams.last_tokens
