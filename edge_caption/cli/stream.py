"""`edge-caption stream`: caption cameras, video files, RTSP/HTTP, Jetson CSI, GStreamer or ROS bags live."""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from .common import bundle_only, decoding, decoding_flags, seconds_pair


def cmd_stream(args: argparse.Namespace) -> int:
    from ..captioner import EdgeCaptioner
    from ..stream.output import EventSink

    bundle = bundle_only(args)
    options = {"every_n": args.every_n, "max_rate": args.max_rate, "gate": args.gate, "emit": args.emit,
               "reconnect": not args.no_reconnect, "max_retries": args.max_retries}
    if args.backoff:
        options["backoff"] = args.backoff
    with EdgeCaptioner(bundle, backend=args.backend, **decoding(args)) as captioner:
        attend = bool(args.show or args.out) and captioner.manifest.attention_grid is not None
        sink = EventSink(json_lines=args.json, show=args.show, out=args.out, sources=args.source)
        # --out gets every frame read (through on_frame), --show the captioned ones (kept in the events).
        stream = captioner.stream(args.source if len(args.source) > 1 else args.source[0], return_attention=attend,
                                  keep_frames=args.show, on_frame=sink.on_frame if args.out else None, **options)
        stopper = _Stopper(stream)
        events = 0
        try:
            for event in stream:
                events += 1
                if not sink.emit(event) or (args.max_events and events >= args.max_events):
                    break
        except KeyboardInterrupt:
            pass
        finally:
            stopper.restore()
            stream.close()
            sink.close()
        stats = stream.stats()
        print(json.dumps({"stats": stats}) if args.json else "\n".join(_readable(s) for s in stats), file=sys.stderr)
    return 0


class _Stopper:
    """Ctrl-C and SIGTERM close the stream from another thread (any thread may), rather than raising in the
    middle of a caption: the frames being captioned are still counted and the video file is finished, not cut.
    A second signal interrupts at once."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.closer: threading.Thread | None = None
        self.previous: dict[int, object] = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            if sig == signal.SIGINT and signal.getsignal(sig) is signal.SIG_IGN:
                continue        # started in the background with Ctrl-C ignored on purpose: keep it so
            try:
                self.previous[sig] = signal.signal(sig, self)
            except ValueError:  # main() called from a thread other than the main one: leave signals alone
                break

    def __call__(self, signum: int, frame: object) -> None:
        if self.closer is not None:
            raise KeyboardInterrupt
        self.closer = threading.Thread(target=self.stream.close, name="edge-caption stop", daemon=True)
        self.closer.start()

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        if self.closer is not None:
            self.closer.join()


def _readable(stats: dict) -> str:
    line = (f"[{stats['source']}] {stats['read']} frames read: {stats['captioned']} captioned, "
            f"{stats['dropped']} dropped ({stats['corrupt']} corrupt), {stats['gated']} gated")
    if stats["suppressed"]:
        line += f", {stats['suppressed']} captions unchanged and not shown"
    if stats["reconnects"]:
        line += f"; {stats['reconnects']} reconnects, {stats['gap_s']:.1f} s without frames"
    return line + (f"; stopped: {stats['error']}" if stats["error"] else "")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stream", help="caption cameras, video files, RTSP/HTTP, Jetson CSI or GStreamer live")
    p.add_argument("inputs", nargs="*", metavar="BUNDLE")
    p.add_argument("-m", "--model", help="the bundle")
    p.add_argument("--source", action="append", required=True,
                   help="camera index, video file, rtsp:// or http(s):// URL, csi://N, a GStreamer pipeline "
                        "ending in appsink, or a ROS bag rosbag:///path/drive.mcap?topic=/cam/image_raw[&rate=1]; "
                        "repeat for several sources (batched together)")
    p.add_argument("--every-n", type=int, default=1, help="caption only every Nth frame")
    p.add_argument("--max-rate", type=float, help="at most this many captions per second per source")
    p.add_argument("--gate", type=float, help="skip frames that changed less than this (0..1) since the last caption")
    p.add_argument("--emit", choices=("always", "changed"), default="always")
    p.add_argument("--no-reconnect", action="store_true", help="end a source that fails instead of reopening it")
    p.add_argument("--max-retries", type=int, help="reopen attempts per outage (default: forever)")
    p.add_argument("--backoff", type=seconds_pair,
                   help="first,longest wait between reopen attempts in seconds (default 0.5,10)")
    p.add_argument("--max-events", type=int, help="stop after this many captions")
    p.add_argument("--show", action="store_true", help="show annotated frames in a window (q quits)")
    p.add_argument("--out", help="write every frame read, with the latest caption drawn on it, to this video at the "
                                 "source's frame rate (NAME_i.mp4 per source when several)")
    p.add_argument("--json", action="store_true", help="one JSON object per caption event on stdout, and the "
                                                       "closing statistics as JSON on stderr")
    p.add_argument("--backend", default="auto")
    decoding_flags(p)
    p.set_defaults(func=cmd_stream)
