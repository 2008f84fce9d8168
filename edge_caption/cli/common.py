"""What every command shares: the parser class, the decoding flags, and finding the bundle among the arguments.

Command modules import from here and never from each other or from the package, so the CLI has no
import cycle (lazy imports included).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..options import DecodeOptions, parse_early_stopping

SAMPLE = Path(__file__).parent.parent / "data" / "scene.jpg"   # a generated scene; its captions: data/captions.json


def decoding_flags(parser: argparse.ArgumentParser) -> None:
    """The decoding options as flags: `--num-beams`, and Hugging Face's spelling `--num_beams` too."""
    group = parser.add_argument_group("decoding (defaults come from the bundle)")
    group.add_argument("--num-beams", type=int)
    group.add_argument("--max-new-tokens", type=int)
    group.add_argument("--min-new-tokens", type=int)
    group.add_argument("--length-penalty", type=float)
    group.add_argument("--early-stopping", type=parse_early_stopping, help="true | false | never")
    group.add_argument("--no-repeat-ngram-size", type=int)
    group.add_argument("--repetition-penalty", type=float)
    group.add_argument("--num-return-sequences", type=int)


def decoding(args: argparse.Namespace) -> dict[str, Any]:
    """The decoding options given on the command line, as keyword arguments for the Python API."""
    return {name: getattr(args, name) for name in DecodeOptions.names() if getattr(args, name, None) is not None}


def is_bundle(path: str) -> bool:
    return (Path(path) / "manifest.json").is_file()


def bundle_and_rest(args: argparse.Namespace, rest: list[str]) -> tuple[str | None, list[str]]:
    """A command's bundle: -m/--model, else a first positional that is a bundle directory."""
    if args.model is not None:
        return args.model, rest
    if rest and is_bundle(rest[0]):
        return rest[0], rest[1:]
    return None, rest


def bundle_only(args: argparse.Namespace) -> str | None:
    """The bundle of a command that takes nothing else positional."""
    bundle, rest = bundle_and_rest(args, args.inputs)
    if rest:
        raise FileNotFoundError(f"{rest[0]} is not a bundle directory (it has no manifest.json)")
    return bundle
