"""Scaling out on one machine: what Triton costs next to captioning in-process, and what Ray Data
gives over a serial loop.

1. Serving: 1, 4 and 16 concurrent clients, each sending one scene (PNG bytes, 224 x 224) after
   another for --seconds: captions/s and per-request latency p50/p99, through `edge-caption serve`
   (Triton, HTTP on loopback, dynamic batching up to --max-batch) vs the same number of threads
   calling one in-process EdgeCaptioner.caption() on the decoded frame.
2. Offline: the same images and scene-video frames captioned by `edge_caption.ray.caption_images`
   on a local Ray (pools of --actors actors) vs a plain loop of caption() calls; the Ray time counts the
   job only (Ray's own start-up is reported apart).

    python benchmarks/bench_serve.py [--json] [--seconds 8] [--clients 1,4,16] [--frames 240]

Needs the serve and ray extras (see .ci/run's .venv-scale) and matplotlib for the chart.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from timing import chart, measure, percentile, write  # noqa: E402


def closed_loop(call, images, clients: int, seconds: float) -> dict:
    """`clients` threads, each calling `call(image)` back to back for `seconds`."""
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(k: int) -> None:
        mine, i = [], k
        while time.monotonic() < stop:
            start = time.perf_counter()
            call(images[i % len(images)])
            mine.append((time.perf_counter() - start) * 1e3)
            i += clients
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - began
    return {"clients": clients, "requests": len(latencies), "seconds": round(elapsed, 2),
            "captions_per_s": len(latencies) / elapsed, "latency_ms_p50": percentile(latencies, 0.5),
            "latency_ms_p99": percentile(latencies, 0.99)}


def bench_serving(args, scenes) -> dict:
    from edge_caption import EdgeCaptioner
    from edge_caption.serve import Client, serve

    pngs = [cv2.imencode(".png", s)[1].tobytes() for s in scenes]
    results: dict = {"in_process": []}
    with EdgeCaptioner() as captioner:
        results["single_caption_ms"] = measure(lambda: captioner.caption(scenes[0]), warmup=5, repeats=50)
        for c in args.clients:
            results["in_process"].append(closed_loop(captioner.caption, scenes, c, args.seconds))
            print("in-process", results["in_process"][-1], file=sys.stderr)
    for n, instances in enumerate(args.instances):
        port = args.port + 3 * n               # a fresh set: the last server's may linger in TIME_WAIT
        key = "triton" if instances == 1 else f"triton_{instances}_instances"
        results[key] = []
        started = time.perf_counter()
        with serve(http_port=port, grpc_port=port + 1, metrics_port=port + 2,
                   max_batch=args.max_batch, instances=instances) as server:
            results[f"{key}_start_s"] = round(time.perf_counter() - started, 2)
            client = Client(server.url)
            for png in pngs[:8]:
                client.caption(png)                    # warm-up: first batches, connections
            for c in args.clients:
                results[key].append(closed_loop(client.caption, pngs, c, args.seconds))
                print(key, results[key][-1], file=sys.stderr)
            client.close()
    return results


def bench_ray(args, scenes, count: int) -> dict:
    import ray

    from edge_caption import EdgeCaptioner
    from edge_caption.frames import expand_inputs, is_video, video_frames
    from edge_caption.ray import caption_images
    from edge_caption.evaluation.scenes import scene_video

    with tempfile.TemporaryDirectory() as tmp:
        images = count // 2
        for i in range(images):
            cv2.imwrite(f"{tmp}/scene{i:04d}.png", scenes[i % len(scenes)])
        writer = cv2.VideoWriter(f"{tmp}/drive.mp4", cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (224, 224))
        for frame, _ in scene_video(0, frames=count - images, size=(224, 224)):
            writer.write(frame)
        writer.release()
        paths = expand_inputs(tmp)

        start = time.perf_counter()
        serial = 0
        with EdgeCaptioner() as captioner:
            for path in paths:
                frames = [f for _, f in video_frames(path, None)] if is_video(path) else [path]
                for frame in frames:
                    captioner.caption(frame)
                    serial += 1
        serial_s = time.perf_counter() - start

        start = time.perf_counter()
        ray.init(num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
        ray.data.DataContext.get_current().enable_progress_bars = False
        init_s = time.perf_counter() - start
        runs = []
        try:
            for actors in args.actors:
                start = time.perf_counter()
                rows = caption_images(tmp, fps=None, batch_size=16, concurrency=actors).take_all()
                seconds = time.perf_counter() - start
                assert len(rows) == serial and not any(r["error"] for r in rows), (len(rows), serial)
                runs.append({"actors": actors, "job_s": round(seconds, 2), "frames_per_s": serial / seconds})
                print("ray", runs[-1], file=sys.stderr)
        finally:
            ray.shutdown()
    return {"frames": serial, "serial_s": round(serial_s, 2), "serial_frames_per_s": serial / serial_s,
            "ray_cpus": args.ray_cpus, "ray_init_s": round(init_s, 2), "ray": runs}


def _version(package: str) -> str | None:
    import importlib.metadata as md

    try:
        return md.version(package)
    except md.PackageNotFoundError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="write results/serve_cpu.json and the chart")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--instances", default="1,2", help="Triton model instances to try (a process each)")
    parser.add_argument("--port", type=int, default=18300)
    parser.add_argument("--frames", default="240,2400", help="frames (half images, half video) for Ray vs serial")
    parser.add_argument("--actors", default="1,2", help="actor pool sizes to try (one CPU and thread each)")
    parser.add_argument("--ray-cpus", type=int, default=2)
    args = parser.parse_args()
    args.clients = [int(c) for c in args.clients.split(",")]
    args.actors = [int(a) for a in args.actors.split(",")]
    args.instances = [int(i) for i in args.instances.split(",")]
    args.frames = [int(f) for f in args.frames.split(",")]

    from edge_caption.evaluation.scenes import split_samples

    load_before = os.getloadavg()
    scenes = [s.image for s in split_samples("test", count=64, size=(224, 224))]
    serving = bench_serving(args, scenes)
    offline = [bench_ray(args, scenes, count) for count in args.frames]
    payload = {"question": "Triton vs in-process captions/s and latency for 1/4/16 clients; Ray Data vs a serial loop",
               "model": "default (show-attend-tell, ONNX Runtime CPU)", "image": "224x224 generated scenes, PNG",
               "max_batch": args.max_batch, "instances": args.instances, "serving": serving, "offline": offline,
               # other work on the machine moves these numbers: record how busy it was
               "load_average_1min": {"start": load_before[0], "end": os.getloadavg()[0]},
               "scale_versions": {p: _version(p) for p in ("nvidia-pytriton", "tritonclient", "ray", "pyarrow")}}
    modes = [k for k, v in serving.items() if isinstance(v, list)]
    for mode in modes:
        for r in serving[mode]:
            print(f"{mode:20s} {r['clients']:2d} clients: {r['captions_per_s']:6.1f} captions/s, "
                  f"p50 {r['latency_ms_p50']:.1f} ms, p99 {r['latency_ms_p99']:.1f} ms")
    for o in offline:
        print(f"offline {o['frames']} frames: serial loop {o['serial_frames_per_s']:.1f}/s; Ray Data "
              + ", ".join(f"{r['actors']} actor(s) {r['frames_per_s']:.1f}/s" for r in o["ray"])
              + f" (+{o['ray_init_s']} s to start Ray)")
    if args.json:
        print(write("serve_cpu", payload))
        label = {"in_process": "in-process", "triton": "Triton"}
        groups = {f"{c} client{'s' * (c > 1)}": {
            label.get(m, m.replace("triton_", "Triton, ").replace("_", " ")): serving[m][i]["captions_per_s"]
            for m in modes} for i, c in enumerate(args.clients)}
        for o in offline:
            groups[f"{o['frames']} frames offline"] = {
                "in-process": o["serial_frames_per_s"],
                **{f"Ray Data, {r['actors']} actor{'s' * (r['actors'] > 1)}": r["frames_per_s"] for r in o["ray"]}}
        print(chart("serve_cpu", groups, ylabel="captions / s", title="Default model, 2-core CPU: "
                    "in-process vs Triton (concurrent clients) and serial loop vs Ray Data"))


if __name__ == "__main__":
    main()
