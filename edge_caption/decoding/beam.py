"""Beam search, token for token what `generate(num_beams=k)` returns (transformers 5.x's vectorised search).

Scores are float32 throughout and every -1e9 mask is added as Hugging Face adds it, so that ties and
near-ties resolve the same way. Images whose result can no longer change are dropped from the batch
(Hugging Face keeps computing them; the outcome is identical).
"""
from __future__ import annotations

import numpy as np

from ..options import DecodeOptions
from .processors import apply_processors, log_softmax
from .state import DecoderState

_NEG = np.float32(-1.0e9)


def _top(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest per row, best first; equal values keep the lower index first."""
    if k < values.shape[1]:
        part = np.argpartition(-values, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(values.shape[1]), values.shape)
    picked = np.take_along_axis(values, part, axis=1)
    order = np.lexsort((part, -picked), axis=-1)
    return np.take_along_axis(part, order, axis=1)


def _gather(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """values [B, k, ...] gathered along axis 1 by index [B, m]."""
    return np.take_along_axis(values, index.reshape(*index.shape, *([1] * (values.ndim - 2))), axis=1)


def beam_search(state: DecoderState, prompt: np.ndarray, eos_ids: np.ndarray, options: DecodeOptions,
                trace: str | None = None) -> list[list[tuple[tuple[int, ...], float, np.ndarray | None]]]:
    """Returns, per image, `num_return_sequences` (token_ids, score, trace) hypotheses, best first.

    A traced step extra follows its tokens: gathered from the same source beam, merged into the
    finished hypotheses by the same picks."""
    nb = options.num_beams
    batch = state.active
    prompt_len = len(prompt)
    max_len = prompt_len + options.max_new_tokens
    keep_k = max(2, 1 + len(eos_ids)) * nb
    lp, es = options.length_penalty, options.early_stopping
    top_mask = np.arange(keep_k) < nb

    running = np.tile(prompt, (batch, nb, 1))                 # [B, nb, cur_len]
    running_scores = np.zeros((batch, nb), dtype=np.float32)
    running_scores[:, 1:] = _NEG
    finished = np.zeros((batch, nb, max_len), dtype=np.int64)
    finished_len = np.zeros((batch, nb), dtype=np.int64)
    finished_scores = np.full((batch, nb), _NEG, dtype=np.float32)
    is_finished = np.zeros((batch, nb), dtype=bool)
    unsatisfied = np.ones(batch, dtype=bool)
    results: list = [[] for _ in range(batch)]
    running_trace = finished_trace = None       # [B, nb, generated, ...] / [B, nb, max new tokens, ...]

    step_ids = running.reshape(batch * nb, -1)
    cur_len = prompt_len
    while True:
        b = state.active
        history = running.reshape(b * nb, cur_len)
        logprobs = apply_processors(log_softmax(state.step(step_ids)), history, options,
                                    prompt_len=prompt_len, eos_ids=eos_ids)
        vocab = logprobs.shape[1]
        acc = (logprobs.reshape(b, nb, vocab) + running_scores[:, :, None]).reshape(b, nb * vocab)
        top = _top(acc, keep_k)
        top_scores = np.take_along_axis(acc, top, axis=1)
        src_beam, tokens = top // vocab, top % vocab
        top_seqs = np.concatenate([np.take_along_axis(running, src_beam[:, :, None], axis=1), tokens[:, :, None]], axis=2)
        hits = np.isin(tokens, eos_ids) | (cur_len + 1 >= max_len)
        if trace is not None:
            now = state.extras[trace].reshape(b, nb, 1, -1)
            if running_trace is None:
                running_trace = np.zeros((b, nb, 0, now.shape[-1]), now.dtype)
                finished_trace = np.zeros((b, nb, max_len - prompt_len, now.shape[-1]), now.dtype)
            top_trace = np.concatenate([_gather(running_trace, src_beam), _gather(now, src_beam)], axis=2)

        # the best nb candidates that did not stop continue
        cont_scores = top_scores + hits.astype(np.float32) * _NEG
        nxt = _top(cont_scores, nb)
        running = np.take_along_axis(top_seqs, nxt[:, :, None], axis=1)
        running_scores = np.take_along_axis(cont_scores, nxt, axis=1)
        if trace is not None:
            running_trace = _gather(top_trace, nxt)
        source_rows = (np.arange(b)[:, None] * nb + np.take_along_axis(src_beam, nxt, axis=1)).reshape(-1)

        # candidates among the top nb that stopped may join the finished hypotheses
        just = hits & top_mask[None, :]
        cand = top_scores / np.float32((cur_len + 1 - prompt_len) ** lp)
        full = is_finished.all(axis=1, keepdims=True) & (es is True)
        cand = cand + full.astype(np.float32) * _NEG
        cand = cand + (~unsatisfied)[:, None].astype(np.float32) * _NEG
        cand = cand + (~just).astype(np.float32) * _NEG
        padded = np.zeros((b, keep_k, max_len), dtype=np.int64)
        padded[:, :, : cur_len + 1] = top_seqs
        merged_scores = np.concatenate([finished_scores, cand], axis=1)
        pick = _top(merged_scores, nb)
        finished = np.take_along_axis(np.concatenate([finished, padded], axis=1), pick[:, :, None], axis=1)
        finished_len = np.take_along_axis(
            np.concatenate([finished_len, np.full((b, keep_k), cur_len + 1 - prompt_len)], axis=1), pick, axis=1)
        finished_scores = np.take_along_axis(merged_scores, pick, axis=1)
        if trace is not None:
            padded_trace = np.zeros((b, keep_k, *finished_trace.shape[2:]), finished_trace.dtype)
            padded_trace[:, :, : top_trace.shape[2]] = top_trace
            finished_trace = _gather(np.concatenate([finished_trace, padded_trace], axis=1), pick)
        is_finished = np.take_along_axis(np.concatenate([is_finished, just], axis=1), pick, axis=1)

        state.reorder(source_rows)
        cur_len += 1

        # Hugging Face's early-stop heuristic, per image
        if es == "never" and lp > 0.0:
            best_len = max_len - prompt_len
        else:
            best_len = cur_len - prompt_len
        best_running = running_scores[:, :1] / np.float32(best_len ** lp)
        worst = np.where(is_finished, finished_scores.min(axis=1, keepdims=True), _NEG)
        unsatisfied = unsatisfied & np.any(best_running > worst, axis=1)

        frozen = ~unsatisfied | (is_finished.all(axis=1) & (es is True))
        stop = frozen | hits.all()
        for i in np.flatnonzero(stop):
            results[state.images[i]] = [
                (tuple(int(t) for t in finished[i, j, prompt_len: prompt_len + finished_len[i, j]]),
                 float(finished_scores[i, j]),
                 None if finished_trace is None else finished_trace[i, j, : finished_len[i, j]])
                for j in range(options.num_return_sequences)
            ]
        if stop.all():
            return results
        if stop.any():
            keep = np.flatnonzero(~stop)
            state.keep(keep)
            running, running_scores = running[keep], running_scores[keep]
            finished, finished_len = finished[keep], finished_len[keep]
            finished_scores, is_finished, unsatisfied = finished_scores[keep], is_finished[keep], unsatisfied[keep]
            if trace is not None:
                running_trace, finished_trace = running_trace[keep], finished_trace[keep]
        step_ids = running[:, :, -1].reshape(-1, 1)
