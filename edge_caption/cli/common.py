"""What every command shares: the parser class, the decoding flags, and finding the bundle among the arguments.

Command modules import from here and never from each other or from the package, so the CLI has no
import cycle (lazy imports included).
"""
from __future__ import annotations

import argparse
import difflib
import re
from pathlib import Path
from typing import Any

from ..bundle import not_a_bundle
from ..errors import OptionError
from ..options import DecodeOptions, parse_early_stopping

SAMPLE = Path(__file__).parent.parent / "data" / "scene.jpg"   # a generated scene; its captions: data/captions.json


class Parser(argparse.ArgumentParser):
    """argparse without its silent prefix matching (`--num` must not quietly mean `--num-beams`), and with
    the dashed spelling suggested for an unknown `--snake_case` flag."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # type: ignore[override]
        if message.startswith("unrecognized arguments"):
            known = self._flags()
            hints = []
            for wrong in re.findall(r"--[A-Za-z0-9_-]+", message):
                near = difflib.get_close_matches(wrong.replace("_", "-"), known, n=1, cutoff=0.8)
                if near:
                    hints.append(f"{wrong}: did you mean {near[0]}?")
            if hints:
                message += " (" + "; ".join(hints) + ")"
        super().error(message)

    def _flags(self) -> list[str]:
        """Every long flag of this parser and its subcommands' parsers."""
        flags = []
        for action in self._actions:
            flags += [o for o in action.option_strings if o.startswith("--")]
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    flags += sub._flags() if isinstance(sub, Parser) else []
        return sorted(set(flags))


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1, refused at parse time (exit 2) rather than after loading a model."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def seconds_pair(text: str) -> tuple[float, float]:
    """An argparse type: "FIRST,LONGEST" seconds, e.g. 0.5,10."""
    try:
        first, longest = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers of seconds like 0.5,10, got {text!r}") from None
    if not 0 <= first <= longest:
        raise argparse.ArgumentTypeError(f"expected 0 <= first <= longest, got {text!r}")
    return first, longest


def flag(name: str) -> tuple[str, ...]:
    """`--num-beams`, and Hugging Face's `--num_beams` where the name has a dash."""
    dashed = f"--{name.replace('_', '-')}"
    underscored = f"--{name.replace('-', '_')}"
    return (dashed, underscored) if underscored != dashed else (dashed,)


def decoding_flags(parser: argparse.ArgumentParser) -> None:
    """The decoding options as flags: `--num-beams`, and Hugging Face's spelling `--num_beams` too."""
    group = parser.add_argument_group(
        "decoding (Hugging Face's names: --num-beams or --num_beams; defaults come from the bundle)")
    group.add_argument(*flag("num_beams"), type=int, metavar="N")
    group.add_argument(*flag("max_new_tokens"), type=int, metavar="N")
    group.add_argument(*flag("min_new_tokens"), type=int, metavar="N")
    group.add_argument(*flag("length_penalty"), type=float, metavar="X")
    group.add_argument(*flag("early_stopping"), type=parse_early_stopping, metavar="{true,false,never}")
    group.add_argument(*flag("no_repeat_ngram_size"), type=int, metavar="N")
    group.add_argument(*flag("repetition_penalty"), type=float, metavar="X")
    group.add_argument(*flag("num_return_sequences"), type=int, metavar="N")


def decoding(args: argparse.Namespace) -> dict[str, Any]:
    """The decoding options given on the command line, as keyword arguments for the Python API."""
    return {name: getattr(args, name) for name in DecodeOptions.names() if getattr(args, name, None) is not None}


def is_bundle(path: str) -> bool:
    return (Path(path) / "manifest.json").is_file()


def _meant_as_bundle(path: str) -> bool:
    """A path that is no bundle but was surely meant as one: a model folder, or a name ending in .ecap."""
    p = Path(path)
    return (p.is_dir() and (p / "config.json").is_file()) or p.name.endswith(".ecap")


def bundle_and_rest(args: argparse.Namespace, rest: list[str]) -> tuple[str | None, list[str]]:
    """A command's bundle: -m/--model, else a first positional that is a bundle directory.

    A first positional that is a model folder (forgot to export) or a missing `*.ecap` (a typo) is an
    error: taking it as an input would caption with the shipped model instead, silently."""
    if args.model is not None:
        if not is_bundle(args.model):
            raise not_a_bundle(args.model)
        return args.model, rest
    if rest and is_bundle(rest[0]):
        return rest[0], rest[1:]
    if rest and _meant_as_bundle(rest[0]):
        raise not_a_bundle(rest[0])
    return None, rest


def bundle_only(args: argparse.Namespace) -> str | None:
    """The bundle of a command that takes nothing else positional."""
    bundle, rest = bundle_and_rest(args, args.inputs)
    if rest and bundle is None:
        raise not_a_bundle(rest[0])
    if rest:
        raise OptionError(f"unexpected argument {rest[0]!r}: `edge-caption {args.command}` takes one bundle")
    return bundle
