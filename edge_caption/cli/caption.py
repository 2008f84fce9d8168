"""`edge-caption caption`: caption image files, globs and directories with a bundle."""
from __future__ import annotations

import argparse
import json

from ..frames import expand_inputs
from .common import SAMPLE, bundle_and_rest, decoding, decoding_flags


def cmd_caption(args: argparse.Namespace) -> int:
    from ..captioner import EdgeCaptioner

    bundle, rest = bundle_and_rest(args, args.inputs)
    if args.sample:
        rest = [*rest, str(SAMPLE)]
    if not rest:
        raise FileNotFoundError("no images to caption: pass image files, a glob, a directory, or --sample")
    images = expand_inputs(rest, "images")
    with EdgeCaptioner(bundle, backend=args.backend) as captioner:
        for path in images:
            caption = captioner.caption(str(path), **decoding(args))
            if args.json:
                print(json.dumps({"image": str(path), **caption.to_dict()}), flush=True)
            else:
                print(f"{path}: {caption.text}", flush=True)
                for alternative in caption.alternatives:
                    print(f"{' ' * len(str(path))}  {alternative.text}  ({alternative.score:.3f})", flush=True)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("caption", help="caption image files, globs or directories")
    p.add_argument("inputs", nargs="*", metavar="[BUNDLE] IMAGE|GLOB|DIR")
    p.add_argument("--sample", action="store_true", help="also caption the sample scene shipped with the package")
    p.add_argument("-m", "--model", help="the bundle (default: first argument if it is a bundle, else the shipped model)")
    p.add_argument("--backend", default="auto", help="auto | tensorrt | torch-cuda | onnxruntime")
    p.add_argument("--json", action="store_true", help="one JSON object per image")
    decoding_flags(p)
    p.set_defaults(func=cmd_caption)
