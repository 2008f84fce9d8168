import pytest

from edge_caption import DecodeOptions, OptionError
from edge_caption.options import parse_early_stopping


def test_defaults_are_hugging_faces():
    opts = DecodeOptions()
    assert (opts.num_beams, opts.length_penalty, opts.early_stopping, opts.num_return_sequences) == (1, 1.0, False, 1)


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(OptionError, match=r"unknown decoding option 'beams'.*num_beams.*max_new_tokens"):
        DecodeOptions().replace(beams=3)


@pytest.mark.parametrize("bad,match", [
    (dict(num_beams=0), "num_beams must be an integer >= 1"),
    (dict(num_beams=2.5), "num_beams must be an integer"),
    (dict(max_new_tokens=0), "max_new_tokens"),
    (dict(repetition_penalty=0.0), "repetition_penalty must be > 0"),
    (dict(length_penalty="long"), "length_penalty must be a number"),
    (dict(early_stopping="sometimes"), "early_stopping must be True, False or \"never\""),
    (dict(num_beams=2, num_return_sequences=3), r"raise num_beams to at least 3"),
    (dict(min_new_tokens=30, max_new_tokens=10), "min_new_tokens"),
    (dict(no_repeat_ngram_size=-1), "no_repeat_ngram_size"),
])
def test_bad_values_name_the_problem(bad, match):
    with pytest.raises(OptionError, match=match):
        DecodeOptions().replace(**bad)


def test_none_keeps_the_default_and_cli_spellings_parse():
    assert DecodeOptions(num_beams=3).replace(num_beams=None).num_beams == 3
    assert [parse_early_stopping(v) for v in ("true", "False", "never", True)] == [True, False, "never", True]
    assert DecodeOptions().replace(early_stopping="never").early_stopping == "never"
