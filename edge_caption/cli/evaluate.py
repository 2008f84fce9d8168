"""`edge-caption eval` and `demo`: caption a labelled data set or a generated video with a bundle."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import OptionError
from .common import bundle_only, decoding, decoding_flags, positive_int


def cmd_eval(args: argparse.Namespace) -> int:
    from ..captioner import EdgeCaptioner
    from ..evaluation import count, evaluate

    bundle = bundle_only(args)
    count(args.data, limit=args.limit)        # a bad --data (or a missing extra) is said before the model loads
    if args.predictions and not Path(args.predictions).expanduser().parent.is_dir():
        raise OptionError(f"--predictions {args.predictions}: its folder does not exist; create it or choose "
                          "another path (checked before the evaluation runs)")
    meteor = {"auto": None, "yes": True, "no": False}[args.meteor]
    with EdgeCaptioner(bundle, backend=args.backend) as captioner:
        result = evaluate(captioner, args.data, limit=args.limit, batch_size=args.batch_size, meteor=meteor,
                          progress=not args.quiet, **decoding(args))
    if args.predictions:
        Path(args.predictions).write_text(json.dumps(result["predictions"], indent=1))
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "predictions"}, indent=2))
        return 0
    print(f"{result['model']} on {result['data']}: {result['images']} images, {result['images_per_s']:.1f} images/s")
    for name, value in result["metrics"].items():
        print(f"  {name:8s} {value:.4f}")
    if "naming" in result:
        from ..evaluation.naming import report_lines

        for line in report_lines(result["naming"]):
            print(f"  {line}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ..captioner import EdgeCaptioner
    from ..evaluation.demo import run

    bundle = bundle_only(args)
    with EdgeCaptioner(bundle, backend=args.backend) as captioner:
        result = run(captioner, args.out, seed=args.seed, frames=args.frames, progress=not args.json,
                     **decoding(args))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        share = result["exact_on_those"]
        print(f"wrote {result['out']}: {result['frames']} frames, median {result['median_latency_ms']:.1f} ms "
              f"per caption" + (f", {share:.0%} a true caption" if share is not None else ""))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="caption a labelled data set and report BLEU, ROUGE-L, CIDEr (METEOR)")
    p.add_argument("inputs", nargs="*", metavar="BUNDLE")
    p.add_argument("-m", "--model", help="the bundle")
    p.add_argument("--data", required=True,
                   help="a generated split (test, val, train; foreign-val, foreign-test: drawn by other code; empty: "
                        "views with nothing to name; SPLIT@SEED for another seed) or a directory with captions.json")
    p.add_argument("--limit", type=positive_int, help="only the first N images")
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--meteor", choices=("auto", "yes", "no"), default="auto",
                   help="METEOR needs Java and pycocoevalcap; auto: when both are present")
    p.add_argument("--predictions", help="write every caption with its references to this JSON file")
    p.add_argument("--backend", default="auto")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true")
    decoding_flags(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("demo", help="caption a generated video and write it annotated as an MP4")
    p.add_argument("inputs", nargs="*", metavar="BUNDLE")
    p.add_argument("-m", "--model", help="the bundle")
    p.add_argument("--out", default="demo.mp4")
    p.add_argument("--seed", type=int, default=0, help="which generated video")
    p.add_argument("--frames", type=int, default=240)
    p.add_argument("--backend", default="auto")
    p.add_argument("--json", action="store_true")
    decoding_flags(p)
    p.set_defaults(func=cmd_demo)
