# Row-wise helpers of the beam core (included by _beam.pyx): per-row top-k, the history-dependent
# logits processors, and the top-k order of a short array. Hugging Face semantics; the reference is
# edge_caption/decoding/beam_reference.py and processors.py.

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


def repetition_penalty(float[:, ::1] scores, const int64_t[:, ::1] history, float penalty):
    """Hugging Face's repetition penalty, in place: every id seen in the row's history, once."""
    _check_rows(scores, history)
    with nogil:
        _repetition_penalty(scores, &history[0, 0], history.shape[1], history.shape[1], penalty)


def block_ngrams(float[:, ::1] scores, const int64_t[:, ::1] history, int n):
    """Ban (-inf) every token that would complete an n-gram already in the row's history, in place."""
    _check_rows(scores, history)
    with nogil:
        _block_ngrams(scores, &history[0, 0], history.shape[1], history.shape[1], n)


cdef _check_rows(float[:, ::1] scores, const int64_t[:, ::1] history):
    if scores.shape[0] != history.shape[0] or history.shape[1] == 0:
        raise ValueError(f"scores [{scores.shape[0]}, V] need a history of as many rows and >= 1 token, got "
                         f"[{history.shape[0]}, {history.shape[1]}]")


cdef void _repetition_penalty(float[:, ::1] scores, const int64_t* history, Py_ssize_t stride, Py_ssize_t length,
                              float penalty) noexcept nogil:
    """history: row r's tokens are history[r * stride: r * stride + length]."""
    cdef Py_ssize_t rows = scores.shape[0], vocab = scores.shape[1], r, t, u
    cdef int64_t tok
    cdef const int64_t* h
    cdef float s
    for r in range(rows):
        h = history + r * stride
        for t in range(length):
            tok = h[t]
            if tok < 0 or tok >= vocab:
                continue
            u = 0
            while u < t and h[u] != tok:
                u += 1
            if u < t:
                continue                # seen earlier in this row: penalised once
            s = scores[r, tok]
            scores[r, tok] = s * penalty if s < 0 else s / penalty


cdef void _block_ngrams(float[:, ::1] scores, const int64_t* history, Py_ssize_t stride, Py_ssize_t length,
                        int n) noexcept nogil:
    cdef Py_ssize_t rows = scores.shape[0], vocab = scores.shape[1], r, s, m
    cdef int64_t tok
    cdef const int64_t* h
    if n < 1 or length < n:
        return
    for r in range(rows):
        h = history + r * stride
        for s in range(length - n + 1):
            m = 0
            while m < n - 1 and h[s + m] == h[length - n + 1 + m]:
                m += 1
            if m == n - 1:
                tok = h[s + n - 1]
                if 0 <= tok < vocab:
                    scores[r, tok] = -INFINITY


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
