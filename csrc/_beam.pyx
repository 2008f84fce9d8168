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
ctypedef int64_t* i64p
ctypedef float* f32p
ctypedef uint8_t* u8p


include "rows.pxi"


cdef class Beams:
    """Running and finished hypotheses; see beam_reference.Beams for the meaning of every step.

    Rows are image-major (row = image * nb + beam). Every buffer lives in one arena (a numpy array that
    owns the memory and gives the Python-side views) addressed by plain pointers, so the nogil loops do
    no memoryview bookkeeping and a step's buffer swap is a pointer swap. Token buffers have room for
    max_len tokens; each step writes the next running/finished sets into a second buffer and swaps.
    """

    cdef readonly int num_beams, keep_k, prompt_len, max_len, cur_len, active, n_stopped
    cdef int capacity, n_eos, n_return, es_mode, min_new, ngram, kc
    cdef int flip      # the double-buffered arrays are swapped: numpy's name + "_tmp" is current
    cdef double lp
    cdef float penalty
    cdef object _arena, _np, _out, _cand
    # [capacity * nb, max_len]
    cdef i64p running, running_tmp, finished, finished_tmp
    # [capacity, nb]
    cdef f32p running_scores, fin_scores, fin_scores_tmp
    cdef i64p fin_len, fin_len_tmp, nxt, pick
    cdef u8p is_fin, is_fin_tmp
    # [capacity]
    cdef u8p unsatisfied, stopped
    # [capacity, keep_k]
    cdef f32p top_scores
    cdef i64p top_beam, top_tokens
    cdef u8p hits
    cdef i64p source_rows, eos, order
    cdef f32p cand, merged
    # [capacity, nb, kc], allocated at the first candidates() (kc = min(keep_k, V))
    cdef f32p cand_scores
    cdef i64p cand_tokens

    def __init__(self, int batch, prompt, eos_ids, options):
        cdef int nb = options.num_beams
        if not 1 <= nb <= 256:
            raise ValueError(f"the Cython beam core takes 1 to 256 beams, got {nb}; use EDGE_CAPTION_BEAM=python")
        eos_ids = np.ascontiguousarray(eos_ids, dtype=np.int64).reshape(-1)
        prompt = np.ascontiguousarray(prompt, dtype=np.int64).reshape(-1)
        if batch < 1 or len(prompt) < 1:
            raise ValueError(f"need at least one image and one prompt token, got {batch} and {len(prompt)}")
        self.num_beams, self.n_eos = nb, len(eos_ids)
        self.keep_k = max(2, 1 + self.n_eos) * nb
        self.prompt_len = self.cur_len = len(prompt)
        self.max_len = self.prompt_len + options.max_new_tokens
        self.active = self.capacity = batch
        self.n_return = options.num_return_sequences
        self.lp = options.length_penalty
        es = options.early_stopping
        self.es_mode = 1 if es is True else (2 if es == "never" else 0)
        self.min_new, self.ngram, self.penalty = options.min_new_tokens, options.no_repeat_ngram_size, \
            options.repetition_penalty
        rows, k = batch * nb, self.keep_k
        # small per-step buffers first, token buffers last
        layout = [
            ("running_scores", (batch, nb), np.float32), ("fin_scores", (batch, nb), np.float32),
            ("fin_scores_tmp", (batch, nb), np.float32), ("fin_len", (batch, nb), np.int64),
            ("fin_len_tmp", (batch, nb), np.int64), ("is_fin", (batch, nb), np.uint8),
            ("is_fin_tmp", (batch, nb), np.uint8), ("unsatisfied", (batch,), np.uint8), ("stopped", (batch,), np.uint8),
            ("top_scores", (batch, k), np.float32), ("top_beam", (batch, k), np.int64),
            ("top_tokens", (batch, k), np.int64), ("hits", (batch, k), np.uint8), ("nxt", (batch, nb), np.int64),
            ("pick", (batch, nb), np.int64), ("source_rows", (rows,), np.int64), ("cand", (k,), np.float32),
            ("merged", (nb + k,), np.float32), ("order", (nb + k,), np.int64), ("eos", (self.n_eos,), np.int64),
            ("running", (rows, self.max_len), np.int64), ("running_tmp", (rows, self.max_len), np.int64),
            ("finished", (rows, self.max_len), np.int64), ("finished_tmp", (rows, self.max_len), np.int64),
        ]
        sizes = [(int(np.prod(shape)) * np.dtype(dtype).itemsize + 63) // 64 * 64 for _, shape, dtype in layout]
        arena = self._arena = np.zeros(sum(sizes) + 64, np.uint8)
        start = (-arena.ctypes.data) % 64
        a = self._np = {}
        for (name, shape, dtype), size in zip(layout, sizes):
            a[name] = arena[start: start + size].view(dtype)[: int(np.prod(shape))].reshape(shape)
            start += size
        a["running"][:, : self.prompt_len] = prompt
        a["running_scores"][:, 1:] = NEG
        a["fin_scores"][:] = NEG
        a["unsatisfied"][:] = 1
        a["eos"][:] = eos_ids
        a["stopped"] = a["stopped"].view(bool)
        self.running, self.running_tmp = _i64(a["running"]), _i64(a["running_tmp"])
        self.finished, self.finished_tmp = _i64(a["finished"]), _i64(a["finished_tmp"])
        self.running_scores, self.fin_scores, self.fin_scores_tmp = \
            _f32(a["running_scores"]), _f32(a["fin_scores"]), _f32(a["fin_scores_tmp"])
        self.fin_len, self.fin_len_tmp, self.nxt, self.pick = \
            _i64(a["fin_len"]), _i64(a["fin_len_tmp"]), _i64(a["nxt"]), _i64(a["pick"])
        self.is_fin, self.is_fin_tmp = _u8(a["is_fin"]), _u8(a["is_fin_tmp"])
        self.unsatisfied, self.stopped = _u8(a["unsatisfied"]), _u8(a["stopped"])
        self.top_scores, self.top_beam, self.top_tokens, self.hits = \
            _f32(a["top_scores"]), _i64(a["top_beam"]), _i64(a["top_tokens"]), _u8(a["hits"])
        self.source_rows, self.eos, self.order = _i64(a["source_rows"]), _i64(a["eos"]), _i64(a["order"])
        self.cand, self.merged = _f32(a["cand"]), _f32(a["merged"])
        self.kc = self.flip = 0
        self._cand = self._out = None
        self.n_stopped = 0

    def _array(self, name):
        """The numpy view of a buffer, following the double-buffer swaps."""
        swapped = name in ("running", "finished", "fin_scores", "fin_len", "is_fin") and self.flip
        return self._np[name + "_tmp" if swapped else name]

    # --- views for the loop (numpy arrays over the buffers; valid until the next call that changes them)

    @property
    def history(self):
        """Every token so far, prompt included: [active * nb, cur_len]."""
        return self._array("running")[: self.active * self.num_beams, : self.cur_len]

    @property
    def last_tokens(self):
        """The ids the next decoder step takes: [active * nb, 1]."""
        return self._array("running")[: self.active * self.num_beams, self.cur_len - 1: self.cur_len].copy()

    @property
    def running_scores(self):
        """The running beams' scores [active, nb] (the static step adds them before its top-k)."""
        return self._np["running_scores"][: self.active]

    @property
    def picks(self):
        """(source beam of each top candidate, candidates that run on, merged entries now finished): the
        last advance()'s choices, for following per-token extras; valid until keep()."""
        b = self.active
        return self._np["top_beam"][:b], self._np["nxt"][:b], self._np["pick"][:b]

    # --- vocabulary-wide work on the rows

    def process(self, float[:, ::1] logprobs):
        """The history-dependent processors, in place, in generate()'s order."""
        cdef Py_ssize_t r, e, vocab = logprobs.shape[1], rows = self.active * self.num_beams
        if logprobs.shape[0] != rows:
            raise ValueError(f"logprobs must have {rows} rows (active images x beams), got {logprobs.shape[0]}")
        with nogil:
            if self.penalty != 1.0:
                _repetition_penalty(logprobs, self.running, self.max_len, self.cur_len, self.penalty)
            if self.ngram > 0:
                _block_ngrams(logprobs, self.running, self.max_len, self.cur_len, self.ngram)
            if self.min_new > 0 and self.cur_len - self.prompt_len < self.min_new:
                for r in range(rows):
                    for e in range(self.n_eos):
                        if 0 <= self.eos[e] < vocab:
                            logprobs[r, self.eos[e]] = -INFINITY

    def candidates(self, const float[:, ::1] logprobs):
        """Per row, the keep_k best of logprobs + the row's beam score: ([b, nb, k] float32, int64), best
        first. They are views of the core's own buffers, which advance() reads when called without them."""
        cdef int b = self.active, nb = self.num_beams, k = min(self.keep_k, <int>logprobs.shape[1]), r
        if logprobs.shape[0] != b * nb:
            raise ValueError(f"logprobs must have {b * nb} rows (active images x beams), got {logprobs.shape[0]}")
        if k != self.kc:
            self._cand = (np.empty((self.capacity, nb, k), dtype=np.float32),
                          np.empty((self.capacity, nb, k), dtype=np.int64))
            self.cand_scores, self.cand_tokens = _f32(self._cand[0]), _i64(self._cand[1])
            self.kc = k
        with nogil:
            for r in range(b * nb):
                _topk_row(&logprobs[r, 0], logprobs.shape[1], self.running_scores[r], k,
                          self.cand_scores + r * k, self.cand_tokens + r * k)
        return self._cand[0][:b], self._cand[1][:b]

    # --- the bookkeeping

    def advance(self, scores=None, tokens=None):
        """One step from per-row candidates, best first per row (default: the last candidates()).

        Returns (source row of every new running row, stopped images): views valid until the next call."""
        cdef int b = self.active, nb = self.num_beams, kc
        cdef const float[:, :, ::1] cs
        cdef const int64_t[:, :, ::1] ct
        cdef const float* sp
        cdef const int64_t* tp
        if scores is None and tokens is None:
            if self.kc == 0:
                raise ValueError("advance() without candidates needs a candidates() call first")
            sp, tp, kc = self.cand_scores, self.cand_tokens, self.kc
        else:
            cs, ct = scores, tokens
            if cs.shape[0] != b or cs.shape[1] != nb or ct.shape[0] != b or ct.shape[1] != nb \
                    or ct.shape[2] != cs.shape[2] or cs.shape[2] == 0:
                raise ValueError(f"candidates must be [{b}, {nb}, k] scores and tokens, got "
                                 f"{tuple(cs.shape)[:3]} and {tuple(ct.shape)[:3]}")
            sp, tp, kc = &cs[0, 0, 0], &ct[0, 0, 0], cs.shape[2]
        if nb * kc < self.keep_k:
            raise ValueError(f"need at least {self.keep_k} candidates per image, got {nb * kc}")
        if self.cur_len >= self.max_len:
            raise ValueError("every hypothesis already has max_len tokens: the search is over")
        cdef int all_hits
        with nogil:
            all_hits = self._advance(sp, tp, kc)
            self._early_stop(all_hits)
        if self._out is None:       # views made once per batch size: a step allocates nothing
            self._out = (self._np["source_rows"][: b * nb], self._np["stopped"][:b])
        return self._out

    cdef int _advance(self, const float* cand_scores, const int64_t* cand_tokens, int kc) noexcept nogil:
        """The step for every active image; returns whether every candidate of every image stopped."""
        cdef int b = self.active, nb = self.num_beams, K = self.keep_k, n_eos = self.n_eos
        cdef int i, j, r, c, best, p, all_hits = 1, full, stride = self.max_len, row
        cdef int heads[256]
        cdef int cur = self.cur_len, new_len = cur + 1 - self.prompt_len, fin_len
        cdef float v, denom = <float>pow(<double>new_len, self.lp), head = 0
        cdef bint at_max = cur + 1 >= self.max_len, all_fin, hit
        cdef int64_t tok
        cdef const float* sc
        cdef const int64_t* tk
        cdef float* top_s
        cdef int64_t* top_t
        cdef int64_t* top_b
        cdef uint8_t* hits
        for i in range(b):
            sc, tk = cand_scores + i * nb * kc, cand_tokens + i * nb * kc
            top_s, top_t, top_b, hits = self.top_scores + i * K, self.top_tokens + i * K, self.top_beam + i * K, \
                self.hits + i * K
            # merge the rows' sorted candidates: (value desc, beam asc) at the heads is flat-index order
            for j in range(nb):
                heads[j] = 0
            for r in range(K):
                best = -1
                for j in range(nb):
                    if heads[j] < kc and (best < 0 or sc[j * kc + heads[j]] > head):
                        best, head = j, sc[j * kc + heads[j]]
                tok = tk[best * kc + heads[best]]
                top_s[r], top_t[r], top_b[r] = head, tok, best
                heads[best] += 1
                hit = at_max
                for j in range(n_eos):
                    if tok == self.eos[j]:
                        hit = True
                hits[r] = hit
                all_hits = all_hits and hit

            # the best nb candidates that did not stop continue
            for r in range(K):
                self.cand[r] = top_s[r] + NEG if hits[r] else top_s[r]
            _top_order(self.cand, K, nb, self.order)
            for j in range(nb):
                c, row = <int>self.order[j], i * nb + j
                self.nxt[row] = c
                memcpy(self.running_tmp + row * stride, self.running + (i * nb + top_b[c]) * stride,
                       cur * sizeof(int64_t))
                self.running_tmp[row * stride + cur] = top_t[c]
                self.running_scores[row] = self.cand[c]
                self.source_rows[row] = i * nb + top_b[c]

            # candidates among the top nb that stopped may join the finished hypotheses
            all_fin = True
            for j in range(nb):
                all_fin = all_fin and self.is_fin[i * nb + j]
                self.merged[j] = self.fin_scores[i * nb + j]
            full = all_fin and self.es_mode == 1
            for r in range(K):
                v = top_s[r] / denom
                if full:
                    v = v + NEG
                if not self.unsatisfied[i]:
                    v = v + NEG
                if not (hits[r] and r < nb):
                    v = v + NEG
                self.merged[nb + r] = v
            _top_order(self.merged, nb + K, nb, self.order)
            for j in range(nb):
                p, row = <int>self.order[j], i * nb + j
                self.pick[row] = p
                self.fin_scores_tmp[row] = self.merged[p]
                if p < nb:
                    fin_len = <int>self.fin_len[i * nb + p]
                    memcpy(self.finished_tmp + row * stride, self.finished + (i * nb + p) * stride,
                           (self.prompt_len + fin_len) * sizeof(int64_t))
                    self.fin_len_tmp[row] = fin_len
                    self.is_fin_tmp[row] = self.is_fin[i * nb + p]
                else:
                    c = p - nb
                    memcpy(self.finished_tmp + row * stride, self.running + (i * nb + top_b[c]) * stride,
                           cur * sizeof(int64_t))
                    self.finished_tmp[row * stride + cur] = top_t[c]
                    self.fin_len_tmp[row] = new_len
                    self.is_fin_tmp[row] = hits[c] and c < nb
        self.running, self.running_tmp = self.running_tmp, self.running
        self.finished, self.finished_tmp = self.finished_tmp, self.finished
        self.fin_scores, self.fin_scores_tmp = self.fin_scores_tmp, self.fin_scores
        self.fin_len, self.fin_len_tmp = self.fin_len_tmp, self.fin_len
        self.is_fin, self.is_fin_tmp = self.is_fin_tmp, self.is_fin
        self.cur_len = cur + 1
        self.flip ^= 1
        return all_hits

    cdef void _early_stop(self, int all_hits) noexcept nogil:
        """Hugging Face's early-stop heuristic, per image, and which images stop."""
        cdef int b = self.active, nb = self.num_beams, i, j, n
        cdef float best_running, worst, denom
        cdef bint any_better, all_fin
        if self.es_mode == 2 and self.lp > 0.0:
            n = self.max_len - self.prompt_len
        else:
            n = self.cur_len - self.prompt_len
        denom = <float>pow(<double>n, self.lp)
        self.n_stopped = 0
        for i in range(b):
            best_running = self.running_scores[i * nb] / denom
            worst = self.fin_scores[i * nb]
            all_fin = True
            for j in range(nb):
                if self.fin_scores[i * nb + j] < worst:
                    worst = self.fin_scores[i * nb + j]
                all_fin = all_fin and self.is_fin[i * nb + j]
            any_better = False
            for j in range(nb):
                if best_running > (worst if self.is_fin[i * nb + j] else NEG):
                    any_better = True
            self.unsatisfied[i] = self.unsatisfied[i] and any_better
            self.stopped[i] = (not self.unsatisfied[i]) or (all_fin and self.es_mode == 1) or all_hits
            self.n_stopped += self.stopped[i]

    def hypotheses(self, int image):
        """The num_return_sequences best (token ids after the prompt, score) of an active image."""
        cdef int j, t, row
        if not 0 <= image < self.active:
            raise IndexError(f"image {image} is not among the {self.active} active images")
        out = []
        for j in range(self.n_return):
            row = image * self.num_beams + j
            ids = tuple([self.finished[row * self.max_len + t]
                         for t in range(self.prompt_len, self.prompt_len + self.fin_len[row])])
            out.append((ids, float(self.fin_scores[row])))
        return out

    def keep(self, images):
        """Keep only these active images (ascending positions in the active list), compacting in place."""
        cdef int64_t[::1] keep = np.ascontiguousarray(images, dtype=np.int64)
        cdef int n = keep.shape[0], nb = self.num_beams, m, i
        cdef size_t tokens = nb * self.max_len * sizeof(int64_t)
        for m in range(n):
            if m > 0 and keep[m] <= keep[m - 1] or keep[m] < 0 or keep[m] >= self.active:
                raise ValueError(f"keep() takes ascending positions among the {self.active} active images")
        with nogil:
            for m in range(n):
                i = <int>keep[m]
                if i == m:
                    continue
                memcpy(self.running + m * nb * self.max_len, self.running + i * nb * self.max_len, tokens)
                memcpy(self.finished + m * nb * self.max_len, self.finished + i * nb * self.max_len, tokens)
                memcpy(self.running_scores + m * nb, self.running_scores + i * nb, nb * sizeof(float))
                memcpy(self.fin_scores + m * nb, self.fin_scores + i * nb, nb * sizeof(float))
                memcpy(self.fin_len + m * nb, self.fin_len + i * nb, nb * sizeof(int64_t))
                memcpy(self.is_fin + m * nb, self.is_fin + i * nb, nb * sizeof(uint8_t))
                self.unsatisfied[m] = self.unsatisfied[i]
            self.active = n
        self._out = None

    def snapshot(self):
        """The state of the active images as the reference holds it (for the equivalence tests)."""
        b, nb, a = self.active, self.num_beams, self._array
        fin = a("finished")[: b * nb].reshape(b, nb, -1).copy()
        lens = a("fin_len")[:b].copy()
        fin[np.arange(self.max_len)[None, None, :] >= (self.prompt_len + lens)[:, :, None]] = 0
        return {
            "running": a("running")[: b * nb, : self.cur_len].reshape(b, nb, -1).copy(),
            "running_scores": a("running_scores")[:b].copy(), "finished": fin, "finished_len": lens,
            "finished_scores": a("fin_scores")[:b].copy(), "is_finished": a("is_fin")[:b].astype(bool),
            "unsatisfied": a("unsatisfied")[:b].astype(bool),
        }


cdef float* _f32(arr) except NULL:
    cdef float[::1] flat = arr.reshape(-1)
    return &flat[0] if flat.shape[0] else <float*>1


cdef int64_t* _i64(arr) except NULL:
    cdef int64_t[::1] flat = arr.reshape(-1)
    return &flat[0] if flat.shape[0] else <int64_t*>1


cdef uint8_t* _u8(arr) except NULL:
    cdef uint8_t[::1] flat = arr.reshape(-1).view(np.uint8)
    return &flat[0] if flat.shape[0] else <uint8_t*>1
