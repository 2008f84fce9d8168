"""Logits processors with Hugging Face's semantics, on numpy float32 rows.

They run in `generate()`'s order (repetition penalty, n-gram blocking, min new tokens) and see the
whole history, prompt tokens included, exactly as `generate()`'s processors see `input_ids`.
"""
from __future__ import annotations

import numpy as np

from ..options import DecodeOptions


def log_softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float32 (what `torch.log_softmax` gives, to float rounding)."""
    x = np.asarray(x, dtype=np.float32)
    shifted = x - x.max(axis=-1, keepdims=True)
    with np.errstate(divide="ignore"):
        return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def apply_processors(
    scores: np.ndarray,
    history: np.ndarray,
    options: DecodeOptions,
    *,
    prompt_len: int,
    eos_ids: np.ndarray,
) -> np.ndarray:
    """`scores` [rows, V] float32 (raw logits for greedy, log-probs for beam search), modified in place.

    `history` [rows, cur_len] int64: every token so far, the prompt included."""
    if options.repetition_penalty != 1.0:
        repetition_penalty(scores, history, options.repetition_penalty)
    if options.no_repeat_ngram_size > 0:
        block_repeated_ngrams(scores, history, options.no_repeat_ngram_size)
    if options.min_new_tokens > 0 and history.shape[1] - prompt_len < options.min_new_tokens:
        scores[:, eos_ids] = -np.inf
    return scores


def needs_full_rows(options: DecodeOptions, generated: int) -> bool:
    """Whether a history-dependent processor changes this step's scores (`generated` tokens so far):
    then a top-k taken before the processors is not enough, and the step's whole rows are needed."""
    return (options.repetition_penalty != 1.0 or options.no_repeat_ngram_size > 0
            or generated < options.min_new_tokens)


def repetition_penalty(scores: np.ndarray, history: np.ndarray, penalty: float) -> None:
    vocab = scores.shape[1]
    rows = np.arange(scores.shape[0])[:, None]
    ids = np.minimum(history, vocab - 1)
    valid = history < vocab  # ids past the LM head cannot be generated; HF sends them to a spare column
    seen = np.zeros(scores.shape, dtype=bool)
    seen[np.broadcast_to(rows, ids.shape)[valid], ids[valid]] = True
    penalty = np.float32(penalty)
    scores[seen] = np.where(scores[seen] < 0, scores[seen] * penalty, scores[seen] / penalty)


def block_repeated_ngrams(scores: np.ndarray, history: np.ndarray, n: int) -> None:
    """Ban every token that would complete an n-gram already present in the row's history."""
    cur_len = history.shape[1]
    if cur_len < n:
        return
    vocab = scores.shape[1]
    for row in range(history.shape[0]):
        tokens = history[row]
        if n == 1:
            banned = tokens
        else:
            prefix = tokens[cur_len - n + 1:]
            windows = np.lib.stride_tricks.sliding_window_view(tokens, n)
            hits = np.all(windows[:, :-1] == prefix, axis=1)
            banned = windows[hits, -1]
        banned = banned[banned < vocab]
        scores[row, banned] = -np.inf
