"""The Cython beam core (csrc/_beam.pyx) against the Python reference (beam_reference.py): identical outputs.

Random score tensors drive both cores through whole searches, step by step: ties (quantised scores, a
few distinct values), -inf entries and whole -inf rows, steps where EOS is every row's best token,
beams finishing at different steps, ids past the vocabulary in the prompt, every option. Every
intermediate (processed rows, candidates, cache reorder, stops, picks, state) must be equal.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_caption.decoding import beam_reference, core
from edge_caption.decoding.processors import apply_processors
from edge_caption.errors import BackendUnavailableError, OptionError
from edge_caption.options import DecodeOptions

try:
    from edge_caption import _beam
except ImportError:
    _beam = None
needs_core = pytest.mark.skipif(_beam is None, reason="edge_caption._beam is not built")


def test_extension_is_built():
    if os.environ.get(core.ENV) == "python":
        pytest.skip(f"{core.ENV}=python")
    assert _beam is not None, "edge_caption._beam is not built: `pip install -e .` compiles it (Cython is a build " \
                              "requirement); set EDGE_CAPTION_BEAM=python to test without it"


def _scores(rng: np.random.Generator, rows: int, vocab: int, style: str) -> np.ndarray:
    if style == "normal":
        x = rng.standard_normal((rows, vocab)) * 3 - 4
    elif style == "quantised":      # sums of halves are exact in float32: ties across beams too
        x = np.round(rng.standard_normal((rows, vocab)) * 2) / 2 - 2
    else:                           # a few distinct values: ties everywhere, also at the k-th place
        x = rng.choice(np.array([-0.5, -1.0, -2.0, -3.5]), size=(rows, vocab))
    return x.astype(np.float32)


def _perturb(rng: np.random.Generator, x: np.ndarray, eos: np.ndarray) -> None:
    if rng.random() < 0.25:
        x[rng.random(x.shape) < 0.3] = -np.inf
    if rng.random() < 0.15:
        x[rng.integers(len(x))] = -np.inf                       # a whole -inf row
    if rng.random() < 0.15:
        x[:, eos] = 0.0                                         # EOS is every row's best: all top beams end
    elif rng.random() < 0.5:
        rows = rng.random(len(x)) < 0.4                         # some beams end now, others later
        x[np.ix_(rows, eos)] += np.float32(rng.uniform(0, 4))


@st.composite
def searches(draw):
    nb = draw(st.integers(1, 5))
    n_eos = draw(st.integers(1, 2))
    vocab = draw(st.sampled_from([3, 4, 7, 12, 25, 60]))
    max_new = draw(st.integers(1, 8))
    options = DecodeOptions(
        num_beams=nb, max_new_tokens=max_new, min_new_tokens=draw(st.integers(0, max_new)),
        length_penalty=draw(st.sampled_from([1.0, 0.0, 0.5, 1.5, 2, -0.5, -1.0])),
        early_stopping=draw(st.sampled_from([False, True, "never"])),
        no_repeat_ngram_size=draw(st.sampled_from([0, 0, 1, 2, 3])),
        repetition_penalty=draw(st.sampled_from([1.0, 1.0, 1.3, 0.8])),
        num_return_sequences=draw(st.integers(1, nb)),
    )
    return dict(options=options, vocab=vocab, n_eos=n_eos, batch=draw(st.integers(1, 4)),
                prompt_len=draw(st.integers(1, 3)), style=draw(st.sampled_from(["normal", "quantised", "few"])),
                seed=draw(st.integers(0, 2**32 - 1)))


def _same(a, b, what: str) -> None:
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=what)


@needs_core
@settings(max_examples=2000, deadline=None)
@given(searches())
def test_cython_core_matches_reference(case):
    options, vocab, batch = case["options"], case["vocab"], case["batch"]
    rng = np.random.default_rng(case["seed"])
    eos = rng.choice(vocab, size=case["n_eos"], replace=False).astype(np.int64)
    prompt = rng.integers(0, vocab + 2, size=case["prompt_len"]).astype(np.int64)   # ids past V: HF skips them
    ref = beam_reference.Beams(batch, prompt, eos, options)
    fast = _beam.Beams(batch, prompt, eos, options)
    images = np.arange(batch)
    _same(ref.history, fast.history, "history at start")
    for step in range(options.max_new_tokens):
        where = f"step {step}"
        x = _scores(rng, len(images) * options.num_beams, vocab, case["style"])
        _perturb(rng, x, eos)
        xr, xf = x.copy(), x.copy()
        ref.process(xr)
        fast.process(xf)
        _same(xr, xf, f"{where}: processed rows")
        cr, cf = ref.candidates(xr), fast.candidates(xf)
        _same(cr[0], cf[0], f"{where}: candidate scores")
        _same(cr[1], cf[1], f"{where}: candidate tokens")
        rows_r, stop_r = ref.advance(*cr)
        # the core's own candidates (the loop's call), or candidates made elsewhere (the GPU's)
        rows_f, stop_f = fast.advance() if step % 2 else fast.advance(cf[0].copy(), cf[1].copy())
        _same(rows_r, rows_f, f"{where}: source rows")
        _same(stop_r, stop_f, f"{where}: stopped")
        assert ref.n_stopped == fast.n_stopped == stop_r.sum(), f"{where}: n_stopped"
        for got, want, name in zip(fast.picks, ref.picks, ("source beams", "next", "finished picks")):
            _same(got, want, f"{where}: {name}")
        snap_r, snap_f = ref.snapshot(), fast.snapshot()
        for name in snap_r:
            _same(snap_r[name], snap_f[name], f"{where}: {name}")
        _same(ref.last_tokens, fast.last_tokens, f"{where}: last tokens")
        for i in np.flatnonzero(stop_r):
            assert ref.hypotheses(int(i)) == fast.hypotheses(int(i)), f"{where}: image {images[i]} hypotheses"
        if stop_r.all():
            return
        if stop_r.any():
            keep = np.flatnonzero(~stop_r)
            ref.keep(keep)
            fast.keep(keep)
            images = images[keep]
            _same(ref.history, fast.history, f"{where}: history after keep")
    pytest.fail("the search did not stop at max_new_tokens")


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(1, 6), n=st.integers(1, 40), k=st.integers(1, 12),
       style=st.sampled_from(["normal", "quantised", "few"]))
def test_top_indices_is_the_stable_order(seed, rows, n, k, style):
    rng = np.random.default_rng(seed)
    values = _scores(rng, rows, n, style)
    values[rng.random(values.shape) < 0.2] = -np.inf
    want = np.argsort(-values, axis=1, kind="stable")[:, :k]
    _same(beam_reference.top_indices(values, k), want, "top_indices")


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), b=st.integers(1, 3), nb=st.integers(1, 5), vocab=st.integers(2, 40),
       k_per_beam=st.integers(2, 3), style=st.sampled_from(["normal", "quantised", "few"]))
def test_merged_row_candidates_are_the_global_top_k(seed, b, nb, vocab, k_per_beam, style):
    """Why per-row top-k is enough: merged, it is the top-k over beams x vocab, ties included."""
    rng = np.random.default_rng(seed)
    k = k_per_beam * nb
    logprobs = _scores(rng, b * nb, vocab, style)
    logprobs[rng.random(logprobs.shape) < 0.2] = -np.inf
    running = _scores(rng, b, nb, "quantised")
    running[:, 1:][rng.random((b, nb - 1)) < 0.3] = beam_reference.NEG
    want = beam_reference.top_indices((logprobs.reshape(b, nb, vocab) + running[:, :, None]).reshape(b, -1), k)
    scores, tokens = beam_reference.row_candidates(logprobs, running, k)
    if _beam is not None:
        fs, ft = _beam.row_topk(logprobs, running.reshape(-1), k)
        _same(scores.reshape(b * nb, -1), fs, "row_topk values")
        _same(tokens.reshape(b * nb, -1), ft, "row_topk indices")
    kc = scores.shape[2]
    pos = beam_reference.top_indices(scores.reshape(b, -1), k)
    flat = (pos // kc) * vocab + np.take_along_axis(tokens.reshape(b, -1), pos, axis=1)
    _same(flat, want, "merged candidates")


@needs_core
@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(1, 5), length=st.integers(1, 12),
       vocab=st.integers(2, 15), penalty=st.sampled_from([1.0, 0.7, 1.3, 2.0]), ngram=st.integers(0, 4))
def test_cython_processors_match_numpy(seed, rows, length, vocab, penalty, ngram):
    rng = np.random.default_rng(seed)
    history = rng.integers(0, vocab + 2, size=(rows, length))      # repeats are common; a few ids past V
    scores = _scores(rng, rows, vocab, "normal")
    scores[rng.random(scores.shape) < 0.1] = -np.inf
    opts = DecodeOptions(repetition_penalty=penalty, no_repeat_ngram_size=ngram)
    want = apply_processors(scores.copy(), history, opts, prompt_len=1, eos_ids=np.array([0]))
    got = scores.copy()
    if penalty != 1.0:
        _beam.repetition_penalty(got, history, penalty)
    if ngram:
        _beam.block_ngrams(got, history, ngram)
    _same(got, want, "processed rows")


def test_environment_variable_chooses_the_core(monkeypatch):
    monkeypatch.setenv(core.ENV, "python")
    assert core.beams_class() is beam_reference.Beams
    monkeypatch.setenv(core.ENV, "fast")
    with pytest.raises(OptionError, match="python', 'cython'"):
        core.beams_class()
    monkeypatch.setattr(core, "_cython", lambda: None)
    monkeypatch.setenv(core.ENV, "cython")
    with pytest.raises(BackendUnavailableError, match="pip install -e ."):
        core.beams_class()
    monkeypatch.delenv(core.ENV)
    monkeypatch.setattr(core, "_warned", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert core.beams_class() is beam_reference.Beams
    assert len(caught) == 1 and "Python reference" in str(caught[0].message)


@needs_core
def test_auto_prefers_cython(monkeypatch):
    monkeypatch.delenv(core.ENV, raising=False)
    assert core.beams_class() is _beam.Beams and core.core_name() == "cython"


@needs_core
def test_bad_candidates_say_what_was_expected():
    options = DecodeOptions(num_beams=3, max_new_tokens=2)
    fast = _beam.Beams(2, np.array([0]), np.array([1]), options)
    with pytest.raises(ValueError, match="candidates\\(\\) call first"):
        fast.advance()
    with pytest.raises(ValueError, match=r"\[2, 3, k\]"):
        fast.advance(np.zeros((2, 2, 6), np.float32), np.zeros((2, 2, 6), np.int64))
    with pytest.raises(ValueError, match="at least 6 candidates"):
        fast.advance(np.zeros((2, 3, 1), np.float32), np.zeros((2, 3, 1), np.int64))
    with pytest.raises(ValueError, match="6 rows"):
        fast.candidates(np.zeros((5, 10), np.float32))
    with pytest.raises(ValueError, match="ascending"):
        fast.keep(np.array([1, 0]))
