"""Token ids -> text with the bundle's `tokenizer.json`, exactly as the model's tokenizer.decode() does."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from .errors import missing_extra

# transformers' clean_up_tokenization: WordPiece tokenizers put spaces before punctuation.
_CLEANUPS = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
             (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


class Detokenizer:
    def __init__(self, path: Path, clean_up_tokenization_spaces: bool = False):
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:  # pragma: no cover - tokenizers is a base dependency
            raise missing_extra("tokenizers", "onnx") from exc
        self._tokenizer = Tokenizer.from_file(str(path))
        self._clean_up = clean_up_tokenization_spaces

    def decode(self, ids: Iterable[int]) -> str:
        text = self._tokenizer.decode(list(ids), skip_special_tokens=True)
        if self._clean_up:
            for old, new in _CLEANUPS:
                text = text.replace(old, new)
        return text
