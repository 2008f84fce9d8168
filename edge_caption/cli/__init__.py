"""`edge-caption ...`: a thin layer that parses flags into the same calls the Python API makes.

Each command module registers its own subcommands (`register(sub)`) and takes what it shares with
the others from `common`; this module only builds the parser and runs the chosen command.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ..errors import EdgeCaptionError
from . import caption, doctor, engines, evaluate, scale, stream
from .common import Parser

# The order of `edge-caption --help`.
COMMANDS = (caption, engines, evaluate, stream, scale, doctor)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = Parser(prog="edge-caption", description="Fast image captioning from Jetson to H100.")
    parser.add_argument("--version", action="version", version=f"edge-caption {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (EdgeCaptionError, FileNotFoundError, FileExistsError) as exc:
        print(f"edge-caption {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:      # `edge-caption stream --json | head`: the reader left, not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
