"""`edge-caption caption`: caption image files, globs and directories with a bundle."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..bundle import not_a_bundle
from ..errors import FrameError, ImageNotFoundError
from ..frames import IMAGE_SUFFIXES, expand_inputs
from .common import SAMPLE, bundle_and_rest, decoding, decoding_flags


def cmd_caption(args: argparse.Namespace) -> int:
    from ..captioner import EdgeCaptioner

    bundle, rest = bundle_and_rest(args, args.inputs)
    if args.sample:
        rest = [*rest, str(SAMPLE)]
    if not rest:
        raise FileNotFoundError("no images to caption: pass image files, a glob, a directory, or --sample")
    images, problems = find_images(rest)
    if not images:
        raise ImageNotFoundError("nothing to caption: " + "; ".join(problems))
    with EdgeCaptioner(bundle, backend=args.backend, prompt=args.prompt) as captioner:
        for path in images:
            try:
                caption = captioner.caption(str(path), **decoding(args))
            except FrameError as exc:     # an unreadable image: caption the others, report it at the end
                problems.append(str(exc))
                continue
            if args.json:
                print(json.dumps({"image": str(path), **caption.to_dict()}), flush=True)
            else:
                print(f"{path}: {caption.text}", flush=True)
                for alternative in caption.alternatives:
                    print(f"{' ' * len(str(path))}  {alternative.text}  ({alternative.score:.3f})", flush=True)
    for problem in problems:
        print(f"edge-caption caption: error: {problem}", file=sys.stderr)
    return 2 if problems else 0


def find_images(inputs: list[str]) -> tuple[list[str], list[str]]:
    """The images the inputs name, and for each input that names none, why (a missing file, an empty
    folder, a model folder, a glob matching nothing): one mistake must not cost the others their caption."""
    images: list[str] = []
    problems: list[str] = []
    for item in inputs:
        try:
            images.extend(expand_inputs([item], "images"))
            continue
        except FileNotFoundError:
            pass
        path = Path(item)
        if path.is_dir() and (path / "config.json").is_file():
            problems.append(f"{item} is a model folder, not images: {not_a_bundle(path)}")
        elif path.is_dir():
            problems.append(f"{item} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}; subfolders are not read)")
        elif any(ch in item for ch in "*?["):
            problems.append(f"no file matches {item!r}")
        elif path.name.endswith(".ecap"):
            problems.append(f"no image at {item}; a bundle goes first or after -m: {not_a_bundle(path)}")
        else:
            problems.append(f"no image at {item}")
    return images, problems


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("caption", help="caption image files, globs or directories")
    p.add_argument("inputs", nargs="*", metavar="[BUNDLE] IMAGE|GLOB|DIR")
    p.add_argument("--sample", action="store_true", help="also caption the sample scene shipped with the package")
    p.add_argument("-m", "--model", help="the bundle (default: first argument if it is a bundle, else the shipped model)")
    p.add_argument("--backend", default="auto", help="auto | tensorrt | torch-cuda | onnxruntime")
    p.add_argument("--json", action="store_true", help="one JSON object per image")
    p.add_argument("--prompt", help="the prompt the bundle was exported with (e.g. Florence-2's \"<CAPTION>\"); "
                   "another one is refused with the export command that makes a bundle for it")
    decoding_flags(p)
    p.set_defaults(func=cmd_caption)
