"""`edge-caption ...`: a thin layer that parses flags into the same calls the Python API makes."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from .errors import EdgeCaptionError
from .frames import expand_inputs
from .options import DecodeOptions, parse_early_stopping


def _decoding_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("decoding (defaults come from the bundle)")
    group.add_argument("--num-beams", type=int)
    group.add_argument("--max-new-tokens", type=int)
    group.add_argument("--min-new-tokens", type=int)
    group.add_argument("--length-penalty", type=float)
    group.add_argument("--early-stopping", type=parse_early_stopping, help="true | false | never")
    group.add_argument("--no-repeat-ngram-size", type=int)
    group.add_argument("--repetition-penalty", type=float)
    group.add_argument("--num-return-sequences", type=int)


def _decoding(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in DecodeOptions.names() if getattr(args, name, None) is not None}


def _is_bundle(path: str) -> bool:
    return (Path(path) / "manifest.json").is_file()


def _bundle_and_rest(args: argparse.Namespace, rest: list[str]) -> tuple[str | None, list[str]]:
    """A command's bundle: -m/--model, else a first positional that is a bundle directory."""
    if args.model is not None:
        return args.model, rest
    if rest and _is_bundle(rest[0]):
        return rest[0], rest[1:]
    return None, rest


def _bundle_only(args: argparse.Namespace) -> str | None:
    """The bundle of a command that takes nothing else positional."""
    bundle, rest = _bundle_and_rest(args, args.inputs)
    if rest:
        raise FileNotFoundError(f"{rest[0]} is not a bundle directory (it has no manifest.json)")
    return bundle


# ---- commands ----------------------------------------------------------------------------------
SAMPLE = Path(__file__).parent / "data" / "scene.jpg"   # a generated scene; its captions: data/captions.json


def cmd_caption(args: argparse.Namespace) -> int:
    from .captioner import EdgeCaptioner

    bundle, rest = _bundle_and_rest(args, args.inputs)
    if args.sample:
        rest = [*rest, str(SAMPLE)]
    if not rest:
        raise FileNotFoundError("no images to caption: pass image files, a glob, a directory, or --sample")
    images = expand_inputs(rest, "images")
    with EdgeCaptioner(bundle, backend=args.backend) as captioner:
        for path in images:
            caption = captioner.caption(str(path), **_decoding(args))
            if args.json:
                print(json.dumps({"image": str(path), **caption.to_dict()}), flush=True)
            else:
                print(f"{path}: {caption.text}", flush=True)
                for alternative in caption.alternatives:
                    print(f"{' ' * len(str(path))}  {alternative.text}  ({alternative.score:.3f})", flush=True)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import report

    facts = report()
    if args.json:
        print(json.dumps(facts, indent=2))
    else:
        for key, value in facts.items():
            print(f"{key:22s} {value}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .captioner import EdgeCaptioner
    from .evaluation import evaluate

    bundle = _bundle_only(args)
    meteor = {"auto": None, "yes": True, "no": False}[args.meteor]
    with EdgeCaptioner(bundle, backend=args.backend) as captioner:
        result = evaluate(captioner, args.data, limit=args.limit, batch_size=args.batch_size, meteor=meteor,
                          progress=not args.quiet, **_decoding(args))
    if args.predictions:
        Path(args.predictions).write_text(json.dumps(result["predictions"], indent=1))
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "predictions"}, indent=2))
        return 0
    print(f"{result['model']} on {result['data']}: {result['images']} images, {result['images_per_s']:.1f} images/s")
    for name, value in result["metrics"].items():
        print(f"  {name:8s} {value:.4f}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .captioner import EdgeCaptioner
    from .evaluation.demo import run

    bundle = _bundle_only(args)
    with EdgeCaptioner(bundle, backend=args.backend) as captioner:
        result = run(captioner, args.out, seed=args.seed, frames=args.frames, progress=not args.json,
                     **_decoding(args))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        share = result["exact_on_those"]
        print(f"wrote {result['out']}: {result['frames']} frames, median {result['median_latency_ms']:.1f} ms "
              f"per caption" + (f", {share:.0%} a true caption" if share is not None else ""))
    return 0


def cmd_stream(args: argparse.Namespace) -> int:
    from .captioner import EdgeCaptioner
    from .stream.output import EventSink

    bundle = _bundle_only(args)
    options = {"every_n": args.every_n, "max_rate": args.max_rate, "gate": args.gate, "emit": args.emit,
               "reconnect": not args.no_reconnect, "max_retries": args.max_retries}
    if args.backoff:
        options["backoff"] = tuple(float(x) for x in args.backoff.split(","))
    with EdgeCaptioner(bundle, backend=args.backend, **_decoding(args)) as captioner:
        draw = bool(args.show or args.out)
        attend = draw and captioner.manifest.attention_grid is not None
        sink = EventSink(json_lines=args.json, show=args.show, out=args.out, sources=len(args.source))
        stream = captioner.stream(args.source if len(args.source) > 1 else args.source[0],
                                  return_attention=attend, keep_frames=draw, **options)
        events = 0
        try:
            for event in stream:
                events += 1
                if not sink.emit(event) or (args.max_events and events >= args.max_events):
                    break
        except KeyboardInterrupt:
            pass
        finally:
            stream.close()
            sink.close()
        print(json.dumps({"stats": stream.stats()}), file=sys.stderr)
    return 0


def _export_module():
    from .errors import BackendUnavailableError

    try:
        import edge_caption.export as module
        import torch  # noqa: F401  (export and training need it; say so before any work starts)
    except ImportError as exc:
        raise BackendUnavailableError(
            f"this command needs torch, onnx and transformers ({exc.name} is missing); "
            "install them with: pip install 'edge-caption[export]'"
        ) from exc
    return module


def cmd_train(args: argparse.Namespace) -> int:
    _export_module()
    from edge_caption.export.train import train

    given = {k: getattr(args, k) for k in ("steps", "batch_size", "lr", "eval_every") if getattr(args, k) is not None}
    summary = train(args.family, args.out, seed=args.seed, overwrite=args.overwrite, **given)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    export = _export_module().export
    targets = tuple(t.strip() for t in args.targets.split(",") if t.strip())
    out = export(args.model, args.out, precision=args.precision, targets=targets, prompt=args.prompt,
                 name=args.name, overwrite=args.overwrite)
    print(out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="edge-caption", description="Fast image captioning from Jetson to H100.")
    parser.add_argument("--version", action="version", version=f"edge-caption {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("export", help="export a captioner (local directory) to a bundle")
    p.add_argument("--model", required=True,
                   help="a local Hugging Face model directory, one written by `edge-caption train`, "
                        "or an fp32 bundle to quantize (with --precision int8)")
    p.add_argument("--out", required=True, help="the bundle directory to write (NAME.ecap)")
    p.add_argument("--precision", default="fp32", help="fp32 | int8 (int8 weights for ONNX Runtime; fp16/fp8 come with `build`)")
    p.add_argument("--targets", default="onnx", help="comma-separated: onnx (always), tensorrt (adds the "
                   "TensorRT-shaped decoder step that `build` makes engines from), torch (adds it and "
                   "torch.export programs for backend torch-cuda)")
    p.add_argument("--prompt", help="a text prefix every caption starts with (BLIP)")
    p.add_argument("--name", help="the model name recorded in the bundle")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle at --out")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("caption", help="caption image files, globs or directories")
    p.add_argument("inputs", nargs="*", metavar="[BUNDLE] IMAGE|GLOB|DIR")
    p.add_argument("--sample", action="store_true", help="also caption the sample scene shipped with the package")
    p.add_argument("-m", "--model", help="the bundle (default: first argument if it is a bundle, else the shipped model)")
    p.add_argument("--backend", default="auto", help="auto | tensorrt | torch-cuda | onnxruntime")
    p.add_argument("--json", action="store_true", help="one JSON object per image")
    _decoding_flags(p)
    p.set_defaults(func=cmd_caption)

    from .cli_engines import add_commands as add_engine_commands

    add_engine_commands(sub)       # info, build

    p = sub.add_parser("eval", help="caption a labelled data set and report BLEU, ROUGE-L, CIDEr (METEOR)")
    p.add_argument("inputs", nargs="*", metavar="BUNDLE")
    p.add_argument("-m", "--model", help="the bundle")
    p.add_argument("--data", required=True,
                   help="a generated split (test, val, train; SPLIT@SEED for another seed) or a directory with captions.json")
    p.add_argument("--limit", type=int, help="only the first N images")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--meteor", choices=("auto", "yes", "no"), default="auto",
                   help="METEOR needs Java and pycocoevalcap; auto: when both are present")
    p.add_argument("--predictions", help="write every caption with its references to this JSON file")
    p.add_argument("--backend", default="auto")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true")
    _decoding_flags(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("demo", help="caption a generated video and write it annotated as an MP4")
    p.add_argument("inputs", nargs="*", metavar="BUNDLE")
    p.add_argument("-m", "--model", help="the bundle")
    p.add_argument("--out", default="demo.mp4")
    p.add_argument("--seed", type=int, default=0, help="which generated video")
    p.add_argument("--frames", type=int, default=240)
    p.add_argument("--backend", default="auto")
    p.add_argument("--json", action="store_true")
    _decoding_flags(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("stream", help="caption cameras, video files, RTSP/HTTP, Jetson CSI or GStreamer live")
    p.add_argument("inputs", nargs="*", metavar="BUNDLE")
    p.add_argument("-m", "--model", help="the bundle")
    p.add_argument("--source", action="append", required=True,
                   help="camera index, video file, rtsp:// or http(s):// URL, csi://N, or a GStreamer pipeline "
                        "ending in appsink; repeat for several sources (batched together)")
    p.add_argument("--every-n", type=int, default=1, help="caption only every Nth frame")
    p.add_argument("--max-rate", type=float, help="at most this many captions per second per source")
    p.add_argument("--gate", type=float, help="skip frames that changed less than this (0..1) since the last caption")
    p.add_argument("--emit", choices=("always", "changed"), default="always")
    p.add_argument("--no-reconnect", action="store_true", help="end a source that fails instead of reopening it")
    p.add_argument("--max-retries", type=int, help="reopen attempts per outage (default: forever)")
    p.add_argument("--backoff", help="first,longest wait between reopen attempts in seconds (default 0.5,10)")
    p.add_argument("--max-events", type=int, help="stop after this many captions")
    p.add_argument("--show", action="store_true", help="show annotated frames in a window (q quits)")
    p.add_argument("--out", help="write annotated frames to this video (NAME_i.mp4 per source when several)")
    p.add_argument("--json", action="store_true", help="one JSON object per caption event on stdout")
    p.add_argument("--backend", default="auto")
    _decoding_flags(p)
    p.set_defaults(func=cmd_stream)

    p = sub.add_parser("train", help="train a reference captioner on the generated scenes (needs torch)")
    p.add_argument("--family", required=True, help="show-tell | show-attend-tell | cnn-transformer")
    p.add_argument("--out", required=True, help="directory for weights, config and the training log")
    p.add_argument("--steps", type=int, help="batches to train on (default 2000)")
    p.add_argument("--batch-size", type=int, help="default 64")
    p.add_argument("--lr", type=float, help="peak learning rate (default 2e-3 RNNs, 1e-3 transformer)")
    p.add_argument("--seed", type=int, default=0, help="initial weights and batch order")
    p.add_argument("--eval-every", type=int, help="validate every N steps (default 500)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_train)

    from .cli_scale import add_commands

    add_commands(sub)

    p = sub.add_parser("doctor", help="GPUs, CUDA, TensorRT, ONNX Runtime providers, OpenCV and GStreamer")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_doctor)
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
