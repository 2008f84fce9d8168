"""Streaming under load: sustained captions/s, capture-to-caption latency and drop rate for 1, 4 and 8
live sources, and a soak run that checks memory and that every frame is accounted for.

Each source is a fake camera (the generated scene video, 160 x 160, paced at --fps) captioned by
the shipped default model on ONNX Runtime.

    python benchmarks/bench_stream.py [--json] [--seconds 10] [--fps 30] [--sources 1,4,8]
    python benchmarks/bench_stream.py --soak 10000 [--json]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from timing import percentile, write  # noqa: E402


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def camera(frames, fps: float, count: int | None = None, seconds: float | None = None):
    """Frames at a steady rate, like a camera: late frames are not made up."""
    start = time.monotonic()
    i = 0
    while (count is None or i < count) and (seconds is None or time.monotonic() - start < seconds):
        due = start + i / fps
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield frames[i % len(frames)]
        i += 1


def run(captioner, frames, sources: int, fps: float, seconds: float) -> dict:
    cams = [camera(frames[k::sources] or frames, fps, seconds=seconds) for k in range(sources)]
    start = time.monotonic()
    with captioner.stream(cams if sources > 1 else cams[0]) as stream:
        latencies = [event.latency_ms for event in stream]
        stats = stream.stats()
    elapsed = time.monotonic() - start
    read = sum(s["read"] for s in stats)
    dropped = sum(s["dropped"] for s in stats)
    captioned = sum(s["captioned"] for s in stats)
    return {"sources": sources, "fps_per_source": fps, "seconds": round(elapsed, 2), "frames_read": read,
            "captioned": captioned, "captions_per_s": captioned / elapsed, "drop_rate": dropped / max(1, read),
            "latency_ms_p50": percentile(latencies, 0.5),
            "latency_ms_p99": percentile(latencies, 0.99),
            "accounted": all(s["read"] == s["captioned"] + s["dropped"] + s["gated"] + s["waiting"] for s in stats)}


def soak(captioner, frames, count: int, fps: float) -> dict:
    warm = 500
    rss = {}
    start = time.monotonic()
    events = 0
    with captioner.stream(camera(frames, fps, count=count)) as stream:
        for event in stream:
            events += 1
            if event.frame_index >= warm and "after_warmup" not in rss:
                rss["after_warmup"] = rss_mb()
        stats = stream.stats()[0]
    rss["end"] = rss_mb()
    growth = (rss["end"] - rss["after_warmup"]) / rss["after_warmup"]
    return {"frames": count, "fps": fps, "seconds": round(time.monotonic() - start, 1), "events": events,
            "stats": stats, "rss_mb": rss, "rss_growth": growth,
            "every_frame_accounted": stats["read"] == count == stats["captioned"] + stats["dropped"] + stats["gated"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="write benchmarks/results/stream_cpu.json (or stream_soak_cpu.json)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--sources", default="1,4,8")
    parser.add_argument("--soak", type=int, help="instead: one source, this many frames, RSS at start and end")
    args = parser.parse_args()

    from edge_caption import EdgeCaptioner
    from edge_caption.evaluation import scenes

    frames = [frame for frame, _ in scenes.scene_video(0, frames=300, size=(160, 160))]
    with EdgeCaptioner(backend="onnxruntime") as captioner:
        captioner.caption(frames[0])
        if args.soak:
            result = soak(captioner, frames, args.soak, args.fps)
            print(result)
            if args.json:
                print(write("stream_soak_cpu", {"soak": result, "command": " ".join(sys.argv)}))
            return
        rows = []
        for n in (int(x) for x in args.sources.split(",")):
            row = run(captioner, frames, n, args.fps, args.seconds)
            rows.append(row)
            print(f"{n} source(s) at {args.fps:g} fps: {row['captions_per_s']:.1f} captions/s, latency p50 "
                  f"{row['latency_ms_p50']:.1f} ms p99 {row['latency_ms_p99']:.1f} ms, drop rate {row['drop_rate']:.1%}, "
                  f"accounted {row['accounted']}", flush=True)
    if args.json:
        print(write("stream_cpu", {"model": "default (scenes-show-attend-tell)", "backend": "onnxruntime",
                                   "rows": rows, "command": " ".join(sys.argv)}))


if __name__ == "__main__":
    main()
