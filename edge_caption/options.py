"""Decoding options: Hugging Face's names, validated here and nowhere else.

The same names are the Python keyword arguments, the CLI flags (`--num-beams`) and the keys of
the manifest's `decoding` section.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import OptionError


@dataclass(frozen=True)
class DecodeOptions:
    """Decoding options, by Hugging Face's names; an unknown name or a bad value is an `OptionError`
    that says which and lists the valid ones. A bundle's defaults come from its manifest (the model's
    generation config).

    num_beams: beams of beam search; 1 is greedy.
    max_new_tokens: the most tokens generated after the prompt (EOS included).
    min_new_tokens: EOS is forbidden before this many tokens.
    length_penalty: beam scores are divided by length ** length_penalty (> 1 favours longer captions).
    early_stopping: beam search stops as soon as num_beams captions are finished (True); when the
        best running beam, scored at its current length, cannot beat the worst kept caption (False,
        Hugging Face's heuristic); or only when no running beam can beat it at any length ("never").
    no_repeat_ngram_size: no n-gram of this size appears twice (0: off).
    repetition_penalty: logits of tokens already generated are divided (if > 0) or multiplied by it
        (1.0: off).
    num_return_sequences: captions returned per image (the best first, the others as
        `Caption.alternatives`); at most num_beams.
    """

    num_beams: int = 1
    max_new_tokens: int = 20
    min_new_tokens: int = 0
    length_penalty: float = 1.0
    early_stopping: bool | str = False          # True | False | "never"
    no_repeat_ngram_size: int = 0
    repetition_penalty: float = 1.0
    num_return_sequences: int = 1

    def __post_init__(self) -> None:
        problems = []

        def integer(name: str, low: int) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                problems.append(f"{name} must be an integer >= {low}, got {value!r}")

        def number(name: str, positive: bool) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                problems.append(f"{name} must be a number, got {value!r}")
            elif positive and value <= 0:
                problems.append(f"{name} must be > 0, got {value!r}")

        integer("num_beams", 1)
        integer("max_new_tokens", 1)
        integer("min_new_tokens", 0)
        integer("no_repeat_ngram_size", 0)
        integer("num_return_sequences", 1)
        number("length_penalty", positive=False)
        number("repetition_penalty", positive=True)
        if self.early_stopping not in (True, False, "never") or isinstance(self.early_stopping, int) and \
                not isinstance(self.early_stopping, bool):
            problems.append(f"early_stopping must be True, False or \"never\", got {self.early_stopping!r}")
        if not problems:
            if self.num_return_sequences > self.num_beams:
                problems.append(
                    f"num_return_sequences ({self.num_return_sequences}) must be <= num_beams ({self.num_beams}); "
                    f"raise num_beams to at least {self.num_return_sequences}"
                )
            if self.min_new_tokens > self.max_new_tokens:
                problems.append(
                    f"min_new_tokens ({self.min_new_tokens}) must be <= max_new_tokens ({self.max_new_tokens})"
                )
        if problems:
            raise OptionError("invalid decoding options: " + "; ".join(problems))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def replace(self, **overrides: Any) -> "DecodeOptions":
        """These options with `overrides` applied; unknown names and bad values raise OptionError."""
        check_names(overrides)
        overrides = {k: v for k, v in overrides.items() if v is not None}
        if "early_stopping" in overrides:
            overrides["early_stopping"] = parse_early_stopping(overrides["early_stopping"])
        return dataclasses.replace(self, **overrides)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "DecodeOptions":
        return cls().replace(**dict(values))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_names(values: Mapping[str, Any]) -> None:
    unknown = sorted(set(values) - set(DecodeOptions.names()))
    if unknown:
        raise OptionError(
            f"unknown decoding option{'s' * (len(unknown) > 1)} {', '.join(map(repr, unknown))}; "
            f"valid options are: {', '.join(DecodeOptions.names())}"
        )


def parse_early_stopping(value: Any) -> bool | str:
    """Accept the CLI's spellings ("true", "false", "never") as well as Python's."""
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        if lowered == "never":
            return "never"
    return value
