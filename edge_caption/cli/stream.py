"""`edge-caption stream`: caption cameras, video files, RTSP/HTTP, Jetson CSI or GStreamer live."""
from __future__ import annotations

import argparse
import json
import sys

from .common import bundle_only, decoding, decoding_flags


def cmd_stream(args: argparse.Namespace) -> int:
    from ..captioner import EdgeCaptioner
    from ..stream_output import EventSink

    bundle = bundle_only(args)
    options = {"every_n": args.every_n, "max_rate": args.max_rate, "gate": args.gate, "emit": args.emit,
               "reconnect": not args.no_reconnect, "max_retries": args.max_retries}
    if args.backoff:
        options["backoff"] = tuple(float(x) for x in args.backoff.split(","))
    with EdgeCaptioner(bundle, backend=args.backend, **decoding(args)) as captioner:
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


def register(sub: argparse._SubParsersAction) -> None:
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
    decoding_flags(p)
    p.set_defaults(func=cmd_stream)
