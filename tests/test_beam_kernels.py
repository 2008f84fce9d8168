"""The CUDA beam kernels against numpy: log-softmax + processors + top-k (values and ids), the merge
across beams, the row gather. Marked `gpu`: they skip without a GPU or without the built library.
"""
from __future__ import annotations

import numpy as np
import pytest

from edge_caption.decoding import beam_reference, kernels
from edge_caption.decoding.processors import apply_processors, log_softmax
from edge_caption.options import DecodeOptions

lib = kernels.load()
gpu = pytest.mark.skipif(lib is None or lib.device_count() == 0,
                         reason="needs a CUDA GPU and the kernels built by nvcc at install time")


def test_library_loads_without_a_gpu():
    """Built or not, importing and loading never fails; without a GPU it reports none."""
    if lib is None:
        pytest.skip("the CUDA kernels are not built (no nvcc at install time)")
    assert lib.lib.ec_version() == 1
    assert lib.device_count() >= 0


class Device:
    """numpy arrays copied to the GPU and back through the library's own helpers."""

    def __init__(self):
        self.ptrs = []

    def put(self, array: np.ndarray) -> int:
        array = np.ascontiguousarray(array)
        ptr = lib.malloc(max(array.nbytes, 1))
        self.ptrs.append(ptr)
        if array.nbytes:
            lib.to_device(ptr, array)
        return ptr

    def empty(self, shape, dtype) -> int:
        return self.put(np.zeros(shape, dtype))

    def get(self, ptr: int, shape, dtype) -> np.ndarray:
        out = np.empty(shape, dtype)
        lib.synchronize()
        lib.to_host(out, ptr)
        return out

    def close(self):
        for ptr in self.ptrs:
            lib.free(ptr)


@pytest.fixture
def dev():
    d = Device()
    yield d
    d.close()


def _reference_topk(logprobs: np.ndarray, add: np.ndarray, k: int):
    acc = logprobs + add[:, None]
    ids = beam_reference.top_indices(acc, k)
    return np.take_along_axis(acc, ids, axis=1), ids


def _check_topk(values, ids, want_values, want_ids, acc):
    np.testing.assert_allclose(values, want_values, rtol=1e-5, atol=1e-5)
    # ids equal, except where two candidates are a genuine near-tie (within float rounding)
    for r, c in zip(*np.nonzero(ids != want_ids)):
        assert abs(acc[r, ids[r, c]] - acc[r, want_ids[r, c]]) <= 1e-5 * max(1.0, abs(acc[r, want_ids[r, c]])), \
            f"row {r} place {c}: kernel picked {ids[r, c]}, numpy {want_ids[r, c]}"


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("rows,vocab,k", [(40, 50_257, 10), (8, 37, 6), (3, 200, 64), (5, 11, 11), (1, 1000, 1)])
def test_logsoftmax_topk_matches_numpy(dev, rows, vocab, k):
    rng = np.random.default_rng(rows * vocab + k)
    logits = (rng.standard_normal((rows, vocab)) * 3).astype(np.float32)
    logits[rng.random(logits.shape) < 0.05] = -np.inf
    add = rng.standard_normal(rows).astype(np.float32) * 4
    want_lp = log_softmax(logits)
    want_v, want_i = _reference_topk(want_lp, add, k)
    x, lp, a = dev.put(logits), dev.empty((rows, vocab), np.float32), dev.put(add)
    ov, oi = dev.empty((rows, k), np.float32), dev.empty((rows, k), np.int64)
    lib.logsoftmax_topk(x, lp, rows, vocab, a, k, ov, oi)
    got_lp = dev.get(lp, (rows, vocab), np.float32)
    np.testing.assert_allclose(got_lp, want_lp, rtol=1e-5, atol=1e-5)
    _check_topk(dev.get(ov, (rows, k), np.float32), dev.get(oi, (rows, k), np.int64), want_v, want_i,
                want_lp + add[:, None])
    # without keeping the log-probs, and without a beam score
    lib.logsoftmax_topk(x, 0, rows, vocab, 0, k, ov, oi)
    want_v, want_i = _reference_topk(want_lp, np.zeros(rows, np.float32), k)
    _check_topk(dev.get(ov, (rows, k), np.float32), dev.get(oi, (rows, k), np.int64), want_v, want_i, want_lp)


@gpu
@pytest.mark.gpu
def test_ties_keep_the_lower_token(dev):
    """Integer logits: equal values everywhere; the order must be (value desc, token asc), exactly."""
    rng = np.random.default_rng(7)
    rows, vocab, k = 6, 3000, 20
    logits = rng.integers(0, 3, size=(rows, vocab)).astype(np.float32)
    x, ov, oi = dev.put(logits), dev.empty((rows, k), np.float32), dev.empty((rows, k), np.int64)
    lib.logsoftmax_topk(x, 0, rows, vocab, 0, k, ov, oi)
    want = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(dev.get(oi, (rows, k), np.int64), want)


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("penalty,ngram,min_new", [(1.3, 0, 0), (0.8, 2, 0), (1.0, 3, 0), (1.2, 2, 5), (1.0, 0, 5)])
def test_processors_in_the_kernel_match_numpy(dev, penalty, ngram, min_new):
    rng = np.random.default_rng(int(penalty * 10) + ngram * 100 + min_new)
    rows, vocab, k, length, stride = 10, 500, 10, 9, 16
    history = np.zeros((rows, stride), np.int64)
    history[:, :length] = rng.integers(0, 6, size=(rows, length))       # repeats: n-grams recur
    history[0, 2] = vocab + 3                                           # an id past the vocabulary
    logits = (rng.standard_normal((rows, vocab)) * 2).astype(np.float32)
    logits[:, :6] += 4                                                  # the history's ids are the best
    eos = np.array([1, 4], np.int64)
    add = rng.standard_normal(rows).astype(np.float32)
    opts = DecodeOptions(repetition_penalty=penalty, no_repeat_ngram_size=ngram, min_new_tokens=min_new,
                         max_new_tokens=max(min_new, 1))
    want_lp = apply_processors(log_softmax(logits), history[:, :length], opts, prompt_len=length, eos_ids=eos)
    want_v, want_i = _reference_topk(want_lp, add, k)
    x, lp, a, h, e = dev.put(logits), dev.empty((rows, vocab), np.float32), dev.put(add), dev.put(history), dev.put(eos)
    ov, oi = dev.empty((rows, k), np.float32), dev.empty((rows, k), np.int64)
    lib.logsoftmax_topk(x, lp, rows, vocab, a, k, ov, oi, history=h, history_len=length, history_stride=stride,
                        repetition_penalty=penalty, no_repeat_ngram_size=ngram, eos=e, n_eos=len(eos),
                        ban_eos=min_new > 0)
    got_lp = dev.get(lp, (rows, vocab), np.float32)
    np.testing.assert_array_equal(np.isneginf(got_lp), np.isneginf(want_lp))
    np.testing.assert_allclose(got_lp, want_lp, rtol=1e-5, atol=1e-5)
    _check_topk(dev.get(ov, (rows, k), np.float32), dev.get(oi, (rows, k), np.int64), want_v, want_i,
                want_lp + add[:, None])


@gpu
@pytest.mark.gpu
def test_in_place_log_probs(dev):
    rng = np.random.default_rng(3)
    logits = (rng.standard_normal((4, 777)) * 2).astype(np.float32)
    x, ov, oi = dev.put(logits), dev.empty((4, 5), np.float32), dev.empty((4, 5), np.int64)
    lib.logsoftmax_topk(x, x, 4, 777, 0, 5, ov, oi)
    np.testing.assert_allclose(dev.get(x, (4, 777), np.float32), log_softmax(logits), rtol=1e-5, atol=1e-5)


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("batch,beams,kc,k", [(8, 5, 10, 10), (3, 4, 3, 12), (2, 1, 6, 4)])
def test_merge_matches_the_reference_order(dev, batch, beams, kc, k):
    rng = np.random.default_rng(batch * 100 + beams)
    values = np.round(rng.standard_normal((batch, beams, kc)) * 2) / 2      # ties across beams
    values = -np.sort(-values, axis=2).astype(np.float32)
    tokens = np.sort(rng.choice(1000, size=(batch, beams, kc)), axis=2).astype(np.int64)
    pos = beam_reference.top_indices(values.reshape(batch, -1), k)          # position order is flat order
    v, t = dev.put(values), dev.put(tokens)
    ov, ob, ot = dev.empty((batch, k), np.float32), dev.empty((batch, k), np.int64), dev.empty((batch, k), np.int64)
    lib.merge_candidates(v, t, batch, beams, kc, k, ov, ob, ot)
    np.testing.assert_array_equal(dev.get(ob, (batch, k), np.int64), pos // kc)
    np.testing.assert_array_equal(dev.get(ot, (batch, k), np.int64),
                                  np.take_along_axis(tokens.reshape(batch, -1), pos, axis=1))
    np.testing.assert_array_equal(dev.get(ov, (batch, k), np.float32),
                                  np.take_along_axis(values.reshape(batch, -1), pos, axis=1))


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("shape,dtype", [((40, 12, 64), np.float32), ((10, 7), np.float16), ((6, 3), np.uint8)])
def test_gather_rows_matches_numpy_take(dev, shape, dtype):
    rng = np.random.default_rng(0)
    src = (rng.standard_normal(shape) * 100).astype(dtype)
    rows = rng.integers(0, shape[0], size=shape[0]).astype(np.int64)
    s, d, r = dev.put(src), dev.empty(shape, dtype), dev.put(rows)
    lib.gather_rows(s, d, r, shape[0], src[0].nbytes)
    np.testing.assert_array_equal(dev.get(d, shape, dtype), np.take(src, rows, axis=0))
