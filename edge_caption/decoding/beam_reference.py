"""The Python reference of beam search's per-step work: readable numpy, written to follow transformers'
`_beam_search` (5.x, vectorised) line by line. `edge_caption._beam` (csrc/_beam.pyx) is the same
interface in Cython and must give identical outputs (tests/test_beam_core.py).

The interface, shared by both:

    beams = Beams(batch, prompt, eos_ids, options)
    beams.process(logprobs)                 # the history-dependent processors, in place, [rows, V]
    scores, tokens = beams.candidates(logprobs)   # per row top-k of logprobs + beam score: [b, nb, k]
    source_rows, stopped = beams.advance()  # the bookkeeping, from those candidates onward
    (or advance(scores, tokens) with candidates made elsewhere, e.g. by the CUDA kernel)
    beams.n_stopped; beams.hypotheses(i); beams.keep(images); beams.last_tokens; beams.picks

Scores are float32 throughout and every -1e9 mask is added as Hugging Face adds it, so that ties and
near-ties resolve the same way.

Why per-row candidates: the top k = max(2, 1 + n_eos) x nb of beams x vocab (ordered by value, then by
flat index beam * V + token) is contained in the union of each row's own top k under the same order,
because that order is total: an entry with k better entries in its own row has k better ones overall.
So the vocabulary-wide work (a kernel on a GPU) hands over only k candidates per row, and merging them
here gives exactly the global top-k.
"""
from __future__ import annotations

import numpy as np

from ..options import DecodeOptions
from .processors import apply_processors

NEG = np.float32(-1.0e9)


def top_indices(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest per row, best first; equal values keep the lower index first.

    argpartition alone may pick any of several values equal to the k-th; rows where that matters take
    a stable sort, so the choice is the lowest indices, as the Cython core and the CUDA kernel make it."""
    n = values.shape[1]
    if k >= n:
        return np.argsort(-values, axis=1, kind="stable")
    part = np.argpartition(-values, k - 1, axis=1)[:, :k]
    picked = np.take_along_axis(values, part, axis=1)
    boundary = picked.min(axis=1, keepdims=True)
    for row in np.flatnonzero((values >= boundary).sum(axis=1) > k):
        part[row] = np.argsort(-values[row], kind="stable")[:k]
        picked[row] = values[row, part[row]]
    order = np.lexsort((part, -picked), axis=-1)
    return np.take_along_axis(part, order, axis=1)


def row_candidates(logprobs: np.ndarray, running_scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k best of logprobs + the row's beam score: (scores [b, nb, k] float32, tokens int64)."""
    b, nb = running_scores.shape
    acc = logprobs + running_scores.reshape(-1, 1)
    k = min(k, acc.shape[1])
    tokens = top_indices(acc, k)
    scores = np.take_along_axis(acc, tokens, axis=1)
    return scores.reshape(b, nb, k), tokens.astype(np.int64).reshape(b, nb, k)


class Beams:
    """Running and finished hypotheses of `batch` images, `options.num_beams` beams each."""

    def __init__(self, batch: int, prompt: np.ndarray, eos_ids: np.ndarray, options: DecodeOptions):
        nb = self.num_beams = options.num_beams
        self.options = options
        self.eos_ids = np.asarray(eos_ids, dtype=np.int64)
        self.prompt_len = len(prompt)
        self.max_len = self.prompt_len + options.max_new_tokens
        self.cur_len = self.prompt_len
        self.keep_k = max(2, 1 + len(self.eos_ids)) * nb
        self.running = np.tile(np.asarray(prompt, dtype=np.int64), (batch, nb, 1))   # [b, nb, cur_len]
        self.running_scores = np.zeros((batch, nb), dtype=np.float32)
        self.running_scores[:, 1:] = NEG
        self.finished = np.zeros((batch, nb, self.max_len), dtype=np.int64)
        self.finished_len = np.zeros((batch, nb), dtype=np.int64)
        self.finished_scores = np.full((batch, nb), NEG, dtype=np.float32)
        self.is_finished = np.zeros((batch, nb), dtype=bool)
        self.unsatisfied = np.ones(batch, dtype=bool)
        self.picks = (None, None, None)
        self.n_stopped = 0      # images the last advance() stopped

    @property
    def history(self) -> np.ndarray:
        """Every token so far, prompt included: [active * nb, cur_len]."""
        return self.running.reshape(-1, self.cur_len)

    @property
    def last_tokens(self) -> np.ndarray:
        """The ids the next decoder step takes: [active * nb, 1]."""
        return self.running[:, :, -1].reshape(-1, 1)

    def process(self, logprobs: np.ndarray) -> None:
        apply_processors(logprobs, self.history, self.options, prompt_len=self.prompt_len, eos_ids=self.eos_ids)

    def candidates(self, logprobs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self._candidates = row_candidates(logprobs, self.running_scores, self.keep_k)
        return self._candidates

    def advance(self, cand_scores: np.ndarray | None = None, cand_tokens: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """One step's bookkeeping from per-row candidates (sorted best first, as `candidates` gives them;
        by default the last `candidates()`).

        Returns the source row of every new running row (the cache reorder) and which images stopped;
        `picks` keeps (source beam of each top candidate, the candidates that run on, the merged
        entries that are now the finished hypotheses) for whoever follows extra per-token data."""
        if cand_scores is None:
            cand_scores, cand_tokens = self._candidates
        b, nb, kc = cand_scores.shape
        cur_len, prompt_len, lp, es = self.cur_len, self.prompt_len, self.options.length_penalty, \
            self.options.early_stopping
        # merging the rows' candidates: position order (beam-major, best first per row) is flat-index order
        flat = top_indices(cand_scores.reshape(b, nb * kc), self.keep_k)
        top_scores = np.take_along_axis(cand_scores.reshape(b, -1), flat, axis=1)
        tokens = np.take_along_axis(cand_tokens.reshape(b, -1), flat, axis=1)
        src_beam = flat // kc
        top_seqs = np.concatenate([np.take_along_axis(self.running, src_beam[:, :, None], axis=1),
                                   tokens[:, :, None]], axis=2)
        hits = np.isin(tokens, self.eos_ids) | (cur_len + 1 >= self.max_len)

        # the best nb candidates that did not stop continue
        cont_scores = top_scores + hits.astype(np.float32) * NEG
        nxt = top_indices(cont_scores, nb)
        self.running = np.take_along_axis(top_seqs, nxt[:, :, None], axis=1)
        self.running_scores = np.take_along_axis(cont_scores, nxt, axis=1)
        source_rows = (np.arange(b)[:, None] * nb + np.take_along_axis(src_beam, nxt, axis=1)).reshape(-1)

        # candidates among the top nb that stopped may join the finished hypotheses
        just = hits & (np.arange(self.keep_k) < nb)[None, :]
        cand = top_scores / np.float32((cur_len + 1 - prompt_len) ** lp)
        full = self.is_finished.all(axis=1, keepdims=True) & (es is True)
        cand = cand + full.astype(np.float32) * NEG
        cand = cand + (~self.unsatisfied)[:, None].astype(np.float32) * NEG
        cand = cand + (~just).astype(np.float32) * NEG
        padded = np.zeros((b, self.keep_k, self.max_len), dtype=np.int64)
        padded[:, :, : cur_len + 1] = top_seqs
        merged_scores = np.concatenate([self.finished_scores, cand], axis=1)
        pick = top_indices(merged_scores, nb)
        self.finished = np.take_along_axis(np.concatenate([self.finished, padded], axis=1), pick[:, :, None], axis=1)
        self.finished_len = np.take_along_axis(
            np.concatenate([self.finished_len, np.full((b, self.keep_k), cur_len + 1 - prompt_len)], axis=1), pick, axis=1)
        self.finished_scores = np.take_along_axis(merged_scores, pick, axis=1)
        self.is_finished = np.take_along_axis(np.concatenate([self.is_finished, just], axis=1), pick, axis=1)
        self.cur_len = cur_len = cur_len + 1
        self.picks = (src_beam, nxt, pick)

        # Hugging Face's early-stop heuristic, per image
        best_len = self.max_len - prompt_len if es == "never" and lp > 0.0 else cur_len - prompt_len
        best_running = self.running_scores[:, :1] / np.float32(best_len ** lp)
        worst = np.where(self.is_finished, self.finished_scores.min(axis=1, keepdims=True), NEG)
        self.unsatisfied = self.unsatisfied & np.any(best_running > worst, axis=1)
        frozen = ~self.unsatisfied | (self.is_finished.all(axis=1) & (es is True))
        stopped = frozen | hits.all()
        self.n_stopped = int(stopped.sum())
        return source_rows, stopped

    def hypotheses(self, image: int) -> list[tuple[tuple[int, ...], float]]:
        """The `num_return_sequences` best (token ids after the prompt, score) of an active image."""
        start = self.prompt_len
        return [(tuple(int(t) for t in self.finished[image, j, start: start + self.finished_len[image, j]]),
                 float(self.finished_scores[image, j])) for j in range(self.options.num_return_sequences)]

    def snapshot(self) -> dict[str, np.ndarray]:
        """The state of the active images, finished ids zeroed past their length (equivalence tests)."""
        finished = self.finished.copy()
        finished[np.arange(self.max_len)[None, None, :] >= (self.prompt_len + self.finished_len)[:, :, None]] = 0
        return {"running": self.running.copy(), "running_scores": self.running_scores.copy(), "finished": finished,
                "finished_len": self.finished_len.copy(), "finished_scores": self.finished_scores.copy(),
                "is_finished": self.is_finished.copy(), "unsatisfied": self.unsatisfied.copy()}

    def keep(self, images: np.ndarray) -> None:
        """Keep only these active images (ascending positions in the active list)."""
        for name in ("running", "running_scores", "finished", "finished_len", "finished_scores", "is_finished",
                     "unsatisfied"):
            setattr(self, name, getattr(self, name)[images])
