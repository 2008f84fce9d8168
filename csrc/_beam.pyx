# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The beam-search core in Cython: the same interface and the same outputs as
edge_caption/decoding/beam_reference.py (read that first: it is the specification).

Float32 arithmetic is done in C `float` in the reference's order, so every rounding matches numpy's;
setup.py compiles with -ffp-contract=off so no compiler fuses a multiply and an add (aarch64 would).
Orders are (value descending, index ascending) everywhere, the reference's tie rule.
Inner loops hold no Python objects and run without the GIL.
"""
from libc.math cimport pow, INFINITY
from libc.stdint cimport int64_t, uint8_t
from libc.string cimport memcpy

import numpy as np

cdef float NEG = -1.0e9


cdef inline bint _better(float a, int64_t ia, float b, int64_t ib) noexcept nogil:
    return a > b or (a == b and ia < ib)


cdef void _topk_row(const float* row, Py_ssize_t n, float add, int k, float* out_v, int64_t* out_i) noexcept nogil:
    """The k best of row + add, best first; equal values keep the lower index (a scan keeps the first seen)."""
    cdef Py_ssize_t j
    cdef int filled = 0, p
    cdef float v
    for j in range(n):
        v = row[j] + add
        if filled == k:
            if not v > out_v[k - 1]:
                continue
            p = k - 1
        else:
            p = filled
            filled += 1
        while p > 0 and out_v[p - 1] < v:
            out_v[p] = out_v[p - 1]
            out_i[p] = out_i[p - 1]
            p -= 1
        out_v[p] = v
        out_i[p] = j


def row_topk(const float[:, ::1] logprobs, const float[::1] add, int k):
    """Per row r, the k best of logprobs[r] + add[r]: (values float32 [rows, k], indices int64 [rows, k])."""
    cdef Py_ssize_t rows = logprobs.shape[0], r
    k = min(k, <int>logprobs.shape[1])
    values = np.empty((rows, k), dtype=np.float32)
    indices = np.empty((rows, k), dtype=np.int64)
    cdef float[:, ::1] v = values
    cdef int64_t[:, ::1] i = indices
    with nogil:
        for r in range(rows):
            _topk_row(&logprobs[r, 0], logprobs.shape[1], add[r], k, &v[r, 0], &i[r, 0])
    return values, indices


def repetition_penalty(float[:, ::1] scores, const int64_t[:, :] history, float penalty):
    """Hugging Face's repetition penalty, in place: every id seen in the row's history, once."""
    with nogil:
        _repetition_penalty(scores, history, penalty)


def block_ngrams(float[:, ::1] scores, const int64_t[:, :] history, int n):
    """Ban (-inf) every token that would complete an n-gram already in the row's history, in place."""
    with nogil:
        _block_ngrams(scores, history, n)


cdef void _repetition_penalty(float[:, ::1] scores, const int64_t[:, :] history, float penalty) noexcept nogil:
    cdef Py_ssize_t rows = scores.shape[0], vocab = scores.shape[1], length = history.shape[1], r, t, u
    cdef int64_t tok
    cdef float s
    for r in range(rows):
        for t in range(length):
            tok = history[r, t]
            if tok < 0 or tok >= vocab:
                continue
            u = 0
            while u < t and history[r, u] != tok:
                u += 1
            if u < t:
                continue                # seen earlier in this row: penalised once
            s = scores[r, tok]
            scores[r, tok] = s * penalty if s < 0 else s / penalty


cdef void _block_ngrams(float[:, ::1] scores, const int64_t[:, :] history, int n) noexcept nogil:
    cdef Py_ssize_t rows = scores.shape[0], vocab = scores.shape[1], length = history.shape[1], r, s, m
    cdef int64_t tok
    if n < 1 or length < n:
        return
    for r in range(rows):
        for s in range(length - n + 1):
            m = 0
            while m < n - 1 and history[r, s + m] == history[r, length - n + 1 + m]:
                m += 1
            if m == n - 1:
                tok = history[r, s + n - 1]
                if 0 <= tok < vocab:
                    scores[r, tok] = -INFINITY


cdef class Beams:
    """Running and finished hypotheses; see beam_reference.Beams for the meaning of every step.

    Rows are image-major (row = image * nb + beam); token buffers have room for max_len tokens, and
    each per-step update writes into a second buffer that is then swapped in."""

    cdef readonly int num_beams, keep_k, prompt_len, max_len, cur_len, active
    cdef int n_eos, n_return, es_mode, min_new, ngram
    cdef double lp
    cdef float penalty
    cdef object options, eos_np, _arrays
    cdef int64_t[::1] eos
    cdef int64_t[:, ::1] running, running_tmp, finished, finished_tmp     # [images * nb, max_len]
    cdef float[:, ::1] running_scores, fin_scores, fin_scores_tmp       # [images, nb]
    cdef int64_t[:, ::1] fin_len, fin_len_tmp
    cdef uint8_t[:, ::1] is_fin, is_fin_tmp
    cdef uint8_t[::1] unsatisfied, stopped
    cdef float[:, ::1] top_scores                                        # [images, keep_k]
    cdef int64_t[:, ::1] top_beam, top_tokens, nxt, pick
    cdef uint8_t[:, ::1] hits
    cdef int64_t[::1] source_rows
    cdef float[::1] cand, merged
    cdef int64_t[::1] order

    def __init__(self, int batch, prompt, eos_ids, options):
        cdef int nb = options.num_beams, i
        if not 1 <= nb <= 256:
            raise ValueError(f"the Cython beam core takes 1 to 256 beams, got {nb}; use EDGE_CAPTION_BEAM=python")
        self.options = options
        self.num_beams = nb
        self.eos_np = np.ascontiguousarray(eos_ids, dtype=np.int64)
        self.eos = self.eos_np
        self.n_eos = len(self.eos_np)
        self.keep_k = max(2, 1 + self.n_eos) * nb
        self.prompt_len = len(prompt)
        self.max_len = self.prompt_len + options.max_new_tokens
        self.cur_len = self.prompt_len
        self.active = batch
        self.n_return = options.num_return_sequences
        self.lp = options.length_penalty
        es = options.early_stopping
        self.es_mode = 1 if es is True else (2 if es == "never" else 0)
        self.min_new = options.min_new_tokens
        self.ngram = options.no_repeat_ngram_size
        self.penalty = options.repetition_penalty
        rows, k = batch * nb, self.keep_k
        a = self._arrays = {
            "running": np.zeros((rows, self.max_len), np.int64), "running_tmp": np.zeros((rows, self.max_len), np.int64),
            "finished": np.zeros((rows, self.max_len), np.int64), "finished_tmp": np.zeros((rows, self.max_len), np.int64),
            "running_scores": np.zeros((batch, nb), np.float32),
            "fin_scores": np.full((batch, nb), NEG, np.float32), "fin_scores_tmp": np.zeros((batch, nb), np.float32),
            "fin_len": np.zeros((batch, nb), np.int64), "fin_len_tmp": np.zeros((batch, nb), np.int64),
            "is_fin": np.zeros((batch, nb), np.uint8), "is_fin_tmp": np.zeros((batch, nb), np.uint8),
            "unsatisfied": np.ones(batch, np.uint8), "stopped": np.zeros(batch, np.uint8),
            "top_scores": np.zeros((batch, k), np.float32), "top_beam": np.zeros((batch, k), np.int64),
            "top_tokens": np.zeros((batch, k), np.int64), "hits": np.zeros((batch, k), np.uint8),
            "nxt": np.zeros((batch, nb), np.int64), "pick": np.zeros((batch, nb), np.int64),
            "source_rows": np.zeros(rows, np.int64),
        }
        a["running"][:, : self.prompt_len] = np.asarray(prompt, dtype=np.int64)
        a["running_scores"][:, 1:] = NEG
        self.running, self.running_tmp = a["running"], a["running_tmp"]
        self.finished, self.finished_tmp = a["finished"], a["finished_tmp"]
        self.running_scores, self.fin_scores, self.fin_scores_tmp = a["running_scores"], a["fin_scores"], a["fin_scores_tmp"]
        self.fin_len, self.fin_len_tmp = a["fin_len"], a["fin_len_tmp"]
        self.is_fin, self.is_fin_tmp = a["is_fin"], a["is_fin_tmp"]
        self.unsatisfied, self.stopped = a["unsatisfied"], a["stopped"]
        self.top_scores, self.top_beam, self.top_tokens = a["top_scores"], a["top_beam"], a["top_tokens"]
        self.hits, self.nxt, self.pick, self.source_rows = a["hits"], a["nxt"], a["pick"], a["source_rows"]
        self.cand = np.zeros(k, np.float32)
        self.merged = np.zeros(nb + k, np.float32)
        self.order = np.zeros(nb + k, np.int64)

    # --- views for the loop (numpy arrays over the buffers; valid until the next call that changes them)

    @property
    def history(self):
        """Every token so far, prompt included: [active * nb, cur_len]."""
        return np.asarray(self.running)[: self.active * self.num_beams, : self.cur_len]

    @property
    def last_tokens(self):
        return np.array(np.asarray(self.running)[: self.active * self.num_beams, self.cur_len - 1: self.cur_len])

    @property
    def picks(self):
        """(source beam of each top candidate, candidates that run on, merged entries now finished): the
        last advance()'s choices, for following per-token extras; valid until keep()."""
        b = self.active
        return (np.asarray(self.top_beam)[:b], np.asarray(self.nxt)[:b], np.asarray(self.pick)[:b])

    # --- vocabulary-wide work on the rows

    def process(self, float[:, ::1] logprobs):
        """The history-dependent processors, in place, in generate()'s order."""
        cdef int64_t[:, :] hist = self.running[: self.active * self.num_beams, : self.cur_len]
        cdef Py_ssize_t r, e, vocab = logprobs.shape[1]
        if logprobs.shape[0] != hist.shape[0]:
            raise ValueError(f"logprobs must have {hist.shape[0]} rows (active images x beams), got {logprobs.shape[0]}")
        with nogil:
            if self.penalty != 1.0:
                _repetition_penalty(logprobs, hist, self.penalty)
            if self.ngram > 0:
                _block_ngrams(logprobs, hist, self.ngram)
            if self.min_new > 0 and self.cur_len - self.prompt_len < self.min_new:
                for r in range(logprobs.shape[0]):
                    for e in range(self.n_eos):
                        if 0 <= self.eos[e] < vocab:
                            logprobs[r, self.eos[e]] = -INFINITY

    def candidates(self, const float[:, ::1] logprobs):
        """Per row, the keep_k best of logprobs + the row's beam score: ([b, nb, k] float32, int64)."""
        b, nb = self.active, self.num_beams
        values, tokens = row_topk(logprobs, np.asarray(self.running_scores)[:b].reshape(-1), self.keep_k)
        return values.reshape(b, nb, -1), tokens.reshape(b, nb, -1)

    # --- the bookkeeping

    def advance(self, const float[:, :, ::1] cand_scores, const int64_t[:, :, ::1] cand_tokens):
        """One step from per-row candidates (best first per row): (source rows, stopped images)."""
        cdef int b = self.active, nb = self.num_beams
        if cand_scores.shape[0] != b or cand_scores.shape[1] != nb or cand_tokens.shape[0] != b \
                or cand_tokens.shape[1] != nb or cand_tokens.shape[2] != cand_scores.shape[2]:
            raise ValueError(f"candidates must be [{b}, {nb}, k] scores and tokens, got "
                             f"{tuple(cand_scores.shape)[:3]} and {tuple(cand_tokens.shape)[:3]}")
        if cand_scores.shape[1] * cand_scores.shape[2] < self.keep_k:
            raise ValueError(f"need at least {self.keep_k} candidates per image, got "
                             f"{cand_scores.shape[1] * cand_scores.shape[2]}")
        if self.cur_len >= self.max_len:
            raise ValueError("every hypothesis already has max_len tokens: the search is over")
        with nogil:
            self._advance(cand_scores, cand_tokens)
        stopped = np.asarray(self.stopped)[:b].astype(bool)
        return np.asarray(self.source_rows)[: b * nb].copy(), stopped

    cdef void _advance(self, const float[:, :, ::1] cs, const int64_t[:, :, ::1] ct) noexcept nogil:
        cdef int b = self.active, nb = self.num_beams, K = self.keep_k, kc = cs.shape[2]
        cdef int i, j, r, c, best, src, p, n, all_hits = 1, full
        cdef int heads[256]
        cdef int cur = self.cur_len, new_len = cur + 1 - self.prompt_len, fin_len
        cdef float v, denom = <float>pow(<double>new_len, self.lp), best_running, worst
        cdef float best_len_denom
        cdef bint at_max = cur + 1 >= self.max_len, any_better, all_fin
        cdef int64_t tok
        for i in range(b):
            # merge the rows' sorted candidates: (value desc, beam asc) at the heads is flat-index order
            for j in range(nb):
                heads[j] = 0
            for r in range(K):
                best = -1
                for j in range(nb):
                    if heads[j] < kc and (best < 0 or cs[i, j, heads[j]] > cs[i, best, heads[best]]):
                        best = j
                self.top_scores[i, r] = cs[i, best, heads[best]]
                self.top_tokens[i, r] = ct[i, best, heads[best]]
                self.top_beam[i, r] = best
                heads[best] += 1
                tok = self.top_tokens[i, r]
                self.hits[i, r] = at_max
                for j in range(self.n_eos):
                    if tok == self.eos[j]:
                        self.hits[i, r] = 1
                all_hits = all_hits and self.hits[i, r]

            # the best nb candidates that did not stop continue
            for r in range(K):
                self.cand[r] = self.top_scores[i, r] + NEG if self.hits[i, r] else self.top_scores[i, r]
            _top_order(&self.cand[0], K, nb, &self.order[0])
            for j in range(nb):
                c = self.order[j]
                self.nxt[i, j] = c
                src = i * nb + <int>self.top_beam[i, c]
                memcpy(&self.running_tmp[i * nb + j, 0], &self.running[src, 0], cur * sizeof(int64_t))
                self.running_tmp[i * nb + j, cur] = self.top_tokens[i, c]
                self.running_scores[i, j] = self.cand[c]
                self.source_rows[i * nb + j] = src

            # candidates among the top nb that stopped may join the finished hypotheses
            all_fin = True
            for j in range(nb):
                all_fin = all_fin and self.is_fin[i, j]
            full = all_fin and self.es_mode == 1
            for j in range(nb):
                self.merged[j] = self.fin_scores[i, j]
            for r in range(K):
                v = self.top_scores[i, r] / denom
                if full:
                    v = v + NEG
                if not self.unsatisfied[i]:
                    v = v + NEG
                if not (self.hits[i, r] and r < nb):
                    v = v + NEG
                self.merged[nb + r] = v
            _top_order(&self.merged[0], nb + K, nb, &self.order[0])
            for j in range(nb):
                p = self.order[j]
                self.pick[i, j] = p
                self.fin_scores_tmp[i, j] = self.merged[p]
                if p < nb:
                    fin_len = <int>self.fin_len[i, p]
                    memcpy(&self.finished_tmp[i * nb + j, 0], &self.finished[i * nb + p, 0],
                           (self.prompt_len + fin_len) * sizeof(int64_t))
                    self.fin_len_tmp[i, j] = fin_len
                    self.is_fin_tmp[i, j] = self.is_fin[i, p]
                else:
                    c = p - nb
                    memcpy(&self.finished_tmp[i * nb + j, 0], &self.running[i * nb + self.top_beam[i, c], 0],
                           cur * sizeof(int64_t))
                    self.finished_tmp[i * nb + j, cur] = self.top_tokens[i, c]
                    self.fin_len_tmp[i, j] = new_len
                    self.is_fin_tmp[i, j] = self.hits[i, c] and c < nb

        self.running, self.running_tmp = self.running_tmp, self.running
        self.finished, self.finished_tmp = self.finished_tmp, self.finished
        self.fin_scores, self.fin_scores_tmp = self.fin_scores_tmp, self.fin_scores
        self.fin_len, self.fin_len_tmp = self.fin_len_tmp, self.fin_len
        self.is_fin, self.is_fin_tmp = self.is_fin_tmp, self.is_fin
        self.cur_len = cur + 1

        # Hugging Face's early-stop heuristic, per image
        if self.es_mode == 2 and self.lp > 0.0:
            n = self.max_len - self.prompt_len
        else:
            n = self.cur_len - self.prompt_len
        best_len_denom = <float>pow(<double>n, self.lp)
        for i in range(b):
            best_running = self.running_scores[i, 0] / best_len_denom
            worst = self.fin_scores[i, 0]
            all_fin = True
            for j in range(nb):
                if self.fin_scores[i, j] < worst:
                    worst = self.fin_scores[i, j]
                all_fin = all_fin and self.is_fin[i, j]
            any_better = False
            for j in range(nb):
                if best_running > (worst if self.is_fin[i, j] else NEG):
                    any_better = True
            self.unsatisfied[i] = self.unsatisfied[i] and any_better
            self.stopped[i] = (not self.unsatisfied[i]) or (all_fin and self.es_mode == 1) or all_hits

    def hypotheses(self, int image):
        """The num_return_sequences best (token ids after the prompt, score) of an active image."""
        out = []
        for j in range(self.n_return):
            row = image * self.num_beams + j
            ids = tuple(int(t) for t in np.asarray(self.finished)[row, self.prompt_len: self.prompt_len + self.fin_len[image, j]])
            out.append((ids, float(self.fin_scores[image, j])))
        return out

    def keep(self, images):
        """Keep only these active images (ascending positions in the active list), compacting in place."""
        cdef int64_t[::1] keep = np.ascontiguousarray(images, dtype=np.int64)
        cdef int n = keep.shape[0], nb = self.num_beams, m, i, j
        for m in range(n):
            if m > 0 and keep[m] <= keep[m - 1] or keep[m] < 0 or keep[m] >= self.active:
                raise ValueError(f"keep() takes ascending positions among the {self.active} active images")
        cdef size_t tokens = nb * self.max_len * sizeof(int64_t)
        with nogil:
            for m in range(n):
                i = <int>keep[m]
                if i == m:
                    continue
                memcpy(&self.running[m * nb, 0], &self.running[i * nb, 0], tokens)
                memcpy(&self.finished[m * nb, 0], &self.finished[i * nb, 0], tokens)
                memcpy(&self.running_scores[m, 0], &self.running_scores[i, 0], nb * sizeof(float))
                memcpy(&self.fin_scores[m, 0], &self.fin_scores[i, 0], nb * sizeof(float))
                memcpy(&self.fin_len[m, 0], &self.fin_len[i, 0], nb * sizeof(int64_t))
                memcpy(&self.is_fin[m, 0], &self.is_fin[i, 0], nb * sizeof(uint8_t))
                self.unsatisfied[m] = self.unsatisfied[i]
            self.active = n

    def snapshot(self):
        """The state of the active images as the reference holds it (for the equivalence tests)."""
        b, nb = self.active, self.num_beams
        fin = np.asarray(self.finished)[: b * nb].reshape(b, nb, -1).copy()
        lens = np.asarray(self.fin_len)[:b]
        fin[np.arange(self.max_len)[None, None, :] >= (self.prompt_len + lens)[:, :, None]] = 0
        return {
            "running": np.asarray(self.running)[: b * nb, : self.cur_len].reshape(b, nb, -1).copy(),
            "running_scores": np.asarray(self.running_scores)[:b].copy(),
            "finished": fin, "finished_len": lens.copy(),
            "finished_scores": np.asarray(self.fin_scores)[:b].copy(),
            "is_finished": np.asarray(self.is_fin)[:b].astype(bool),
            "unsatisfied": np.asarray(self.unsatisfied)[:b].astype(bool),
        }


cdef void _top_order(float* values, int n, int k, int64_t* out) noexcept nogil:
    """The indices of the k best of n values, best first; equal values keep the lower index first."""
    cdef int filled = 0, j, p
    for j in range(n):
        if filled == k:
            if not values[j] > values[out[k - 1]]:
                continue
            p = k - 1
        else:
            p = filled
            filled += 1
        while p > 0 and values[out[p - 1]] < values[j]:
            out[p] = out[p - 1]
            p -= 1
        out[p] = j
