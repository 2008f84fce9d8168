"""Greedy search, token for token what `generate(num_beams=1, do_sample=False)` returns."""
from __future__ import annotations

import numpy as np

from ..options import DecodeOptions
from .processors import apply_processors, log_softmax, needs_full_rows
from .state import DecoderState
from .static import take_step


def greedy_search(state: DecoderState, prompt: np.ndarray, eos_ids: np.ndarray, options: DecodeOptions,
                  trace: str | None = None) -> list[list[tuple[tuple[int, ...], float, np.ndarray | None]]]:
    """Returns, per image, one (token_ids, mean token log-prob, trace) hypothesis."""
    images = state.active
    prompt_len = len(prompt)
    max_len = prompt_len + options.max_new_tokens
    history = np.tile(prompt, (images, 1))
    logprob_sum = np.zeros(images, dtype=np.float64)
    results: list = [[] for _ in range(images)]
    traced = None
    step_ids = history
    while True:
        full = needs_full_rows(options, history.shape[1] - prompt_len)
        top, logits = take_step(state, step_ids, 1, (history, options, prompt_len, eos_ids, True) if full else None)
        if top is not None:     # the static step's top-1 of log-softmax (after the processors, where run)
            tokens = top[1][:, 0]
            logprob_sum += top[0][:, 0]
        else:
            scores = apply_processors(logits, history, options, prompt_len=prompt_len, eos_ids=eos_ids)
            tokens = scores.argmax(axis=1)
            logprob_sum += log_softmax(scores)[np.arange(len(tokens)), tokens]
        history = np.concatenate([history, tokens[:, None]], axis=1)
        if trace is not None:
            now = state.extras[trace][:, None]
            traced = now if traced is None else np.concatenate([traced, now], axis=1)
        done = np.isin(tokens, eos_ids) | (history.shape[1] >= max_len)
        for row in np.flatnonzero(done):
            generated = history[row, prompt_len:]
            results[state.images[row]] = [(tuple(int(t) for t in generated), float(logprob_sum[row] / len(generated)),
                                           None if traced is None else traced[row])]
        if done.all():
            return results
        if done.any():
            keep = np.flatnonzero(~done)
            state.keep(keep)
            history, logprob_sum, tokens = history[keep], logprob_sum[keep], tokens[keep]
            traced = None if traced is None else traced[keep]
        step_ids = tokens[:, None]
