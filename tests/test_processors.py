"""Our numpy logits processors against transformers' own, on random histories and scores."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
from transformers.generation.logits_process import (  # noqa: E402
    MinNewTokensLengthLogitsProcessor, NoRepeatNGramLogitsProcessor, RepetitionPenaltyLogitsProcessor)

from edge_caption.decoding.processors import apply_processors, log_softmax  # noqa: E402
from edge_caption.options import DecodeOptions  # noqa: E402

VOCAB = 12


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    rows=st.integers(1, 4),
    length=st.integers(1, 9),
    penalty=st.sampled_from([1.0, 0.7, 1.3, 2.0]),
    ngram=st.integers(0, 4),
    min_new=st.integers(0, 6),
    prompt_len=st.integers(1, 2),
)
def test_processors_match_transformers(seed, rows, length, penalty, ngram, min_new, prompt_len):
    rng = np.random.default_rng(seed)
    history = rng.integers(0, 4, size=(rows, max(length, prompt_len)))   # few ids: repeats are common
    scores = rng.standard_normal((rows, VOCAB)).astype(np.float32) * 3
    eos = np.array([1])
    opts = DecodeOptions(repetition_penalty=penalty, no_repeat_ngram_size=ngram, min_new_tokens=min_new,
                         max_new_tokens=max(min_new, 1))
    ours = apply_processors(scores.copy(), history, opts, prompt_len=prompt_len, eos_ids=eos)

    ids, ref = torch.from_numpy(history), torch.from_numpy(scores.copy())
    if penalty != 1.0:
        ref = RepetitionPenaltyLogitsProcessor(penalty)(ids, ref)
    if ngram > 0:
        ref = NoRepeatNGramLogitsProcessor(ngram)(ids, ref)
    if min_new > 0:
        ref = MinNewTokensLengthLogitsProcessor(prompt_len, min_new, torch.tensor(eos))(ids, ref)
    np.testing.assert_array_equal(ours, ref.numpy())


def test_log_softmax_matches_torch():
    x = np.random.default_rng(0).standard_normal((5, 1000)).astype(np.float32) * 10
    np.testing.assert_allclose(log_softmax(x), torch.log_softmax(torch.from_numpy(x), -1).numpy(), atol=2e-6)
