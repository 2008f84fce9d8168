"""`edge-caption serve`, `export-triton` and `batch`: scaling out through Triton and Ray Data.

The flags parse into the same calls the Python API makes (`edge_caption.serve`, `edge_caption.ray`).
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from pathlib import Path

from ..errors import OptionError
from .common import bundle_and_rest, bundle_only, decoding, decoding_flags, positive_int


def cmd_serve(args: argparse.Namespace) -> int:
    from ..serve import Server

    server = Server(bundle_only(args), host=args.host, http_port=args.http_port, grpc_port=args.grpc_port,
                    metrics_port=args.metrics_port, max_batch=args.max_batch, instances=args.instances,
                    model_name=args.model_name, backend=args.backend)
    # A service manager's SIGTERM stops Triton and removes its workspace, like Ctrl-C does. Ctrl-C's
    # own handler is set too: a shell starts background jobs with SIGINT ignored, and Python keeps it so.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:                # a stop at any moment, starting included, leaves no tritonserver and no workspace
        server.start()
        print(f"serving model {args.model_name!r} with Triton: HTTP {args.host}:{args.http_port}, "
              f"gRPC {args.host}:{args.grpc_port}, metrics http://{args.host}:{args.metrics_port}/metrics "
              f"(Ctrl-C stops)", flush=True)
        status = server.wait()
    finally:
        server.stop()
    return 0 if status in (0, -signal.SIGTERM, -signal.SIGINT) else 1


def cmd_export_triton(args: argparse.Namespace) -> int:
    from ..serve import write_repository

    model_dir = write_repository(args.repo, bundle_only(args), model_name=args.model_name, max_batch=args.max_batch,
                                 instances=args.instances, backend=args.backend)
    print(model_dir)
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    from ..ray import _ray, caption_images
    from ..ros.bag import is_bag

    bundle, inputs = bundle_and_rest(args, args.inputs)
    if not inputs:
        raise FileNotFoundError("nothing to caption: pass images, videos, globs or directories")
    out = Path(args.out)
    if "://" not in args.out and out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty; choose a new --out directory (Parquet files would mix runs)")
    bags = [item for item in inputs if is_bag(item)]
    if bags and len(bags) != len(inputs):
        raise OptionError("ROS bags and images/videos cannot be captioned in one run (their rows differ); "
                          f"run batch once for the bags ({', '.join(bags)}) and once for the rest")
    if (args.topic or args.bag_out) and not bags:
        raise OptionError("--topic and --bag-out are for ROS bags (.bag, .mcap, .db3 or a ROS 2 bag directory)")
    if bags:
        return _batch_bags(args, bundle, bags)
    ray = _ray()
    # "local": a fresh Ray on this machine, even where a cluster is running; "auto" joins that one.
    ray.init(address=args.ray_address or "local", include_dashboard=False if not args.ray_address else None,
             logging_level="WARNING")
    # Ray Data's progress bars stay; its INFO lines about execution plans do not help here.
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    try:
        start = time.perf_counter()
        ds = caption_images(inputs, bundle, fps=args.fps or None, batch_size=args.batch_size,
                            concurrency=args.concurrency, num_gpus=args.num_gpus, **decoding(args))
        ds.write_parquet(args.out)
        seconds = time.perf_counter() - start
        summary = _errors_column(args.out)
    finally:
        ray.shutdown()
    rows, errors = len(summary), int(summary.notna().sum())
    report = {"out": args.out, "rows": rows, "errors": errors, "seconds": round(seconds, 2),
              "rows_per_s": round(rows / seconds, 2)}
    print(json.dumps(report) if args.json else
          f"wrote {rows} captions ({errors} rows with an error) to {args.out} in {seconds:.1f} s "
          f"({rows / seconds:.1f}/s)", file=sys.stdout)
    return 0


def _batch_bags(args: argparse.Namespace, bundle, bags: list[str]) -> int:
    """Bags: in this process, streaming, unless a Ray cluster (or `--ray-address local`) is asked for."""
    if args.ray_address:
        from ..ros.ray import caption_bags_with_ray

        report = caption_bags_with_ray(bags, args.out, bundle, topics=args.topic or (), fps=args.fps or None,
                                       batch_size=args.batch_size, concurrency=args.concurrency,
                                       num_gpus=args.num_gpus, bag_out=args.bag_out, address=args.ray_address,
                                       **decoding(args))
    else:
        from ..ros.batch import caption_bags

        report = caption_bags(bags, args.out, bundle, topics=args.topic or (), fps=args.fps or None,
                              batch_size=args.batch_size, bag_out=args.bag_out, **decoding(args))
    rows, errors, seconds = report["rows"], report["errors"], report["seconds"]
    summary = {"out": args.out, "rows": rows, "errors": errors, "seconds": round(seconds, 2),
               "rows_per_s": round(rows / max(seconds, 1e-9), 2)}
    if args.bag_out:
        summary["bag_out"] = str(args.bag_out)
        summary["captions"] = report["captions"]
    print(json.dumps(summary) if args.json else
          f"wrote {rows} captions ({errors} rows with an error) to {args.out} in {seconds:.1f} s "
          f"({rows / max(seconds, 1e-9):.1f}/s)" + (f"; {report['captions']} captions to {args.bag_out}"
                                                    if args.bag_out else ""), file=sys.stdout)
    return 0


def _errors_column(out: str):
    if "://" in out:            # object storage: read it back through Ray, which has the credentials
        import ray

        return ray.data.read_parquet(out).select_columns(["error"]).to_pandas()["error"]
    import pyarrow.parquet as pq

    return pq.read_table(out, columns=["error"]).to_pandas()["error"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve captions from Triton Inference Server (needs the serve extra)")
    p.add_argument("inputs", nargs="*", metavar="BUNDLE")
    p.add_argument("-m", "--model", help="the bundle")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback; 0.0.0.0 for all)")
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--metrics-port", type=int, default=8002)
    _repository_flags(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("export-triton", help="write a Triton model repository (Python backend + the bundle)")
    p.add_argument("inputs", nargs="*", metavar="BUNDLE")
    p.add_argument("-m", "--model", help="the bundle")
    p.add_argument("--repo", required=True, help="the model repository directory (created if missing)")
    _repository_flags(p)
    p.set_defaults(func=cmd_export_triton)

    p = sub.add_parser("batch", help="caption images and videos offline with Ray Data, or ROS bags, to Parquet")
    p.add_argument("inputs", nargs="+", metavar="[BUNDLE] INPUT",
                   help="images, videos, globs or directories; or ROS bags (.bag, .mcap, .db3, ROS 2 bag directories)")
    p.add_argument("-m", "--model", help="the bundle")
    p.add_argument("--out", required=True, help="directory (or s3://... on a cluster) for the Parquet files")
    p.add_argument("--fps", type=float, default=1.0, help="video frames captioned per second of video, bag "
                                                          "messages per second of message time and topic (0: all)")
    p.add_argument("--ray-address", help="a Ray cluster to run on (auto: the one this machine belongs to); "
                                         "default: a local Ray for this command (bags: this process, no Ray; "
                                         "'local' for a local Ray)")
    p.add_argument("--topic", action="append", help="bags: an image topic to caption (sensor_msgs/Image or "
                                                    "CompressedImage); repeat for several (default: all of them)")
    p.add_argument("--bag-out", help="bags: also write the captions to this MCAP file, a std_msgs/String topic "
                                     "TOPIC/caption per camera topic at the images' header stamps")
    p.add_argument("--batch-size", type=positive_int, default=16, help="frames per caption_batch call")
    p.add_argument("--concurrency", type=int, help="captioning actors (default: Ray decides)")
    p.add_argument("--num-gpus", type=float, default=0, help="GPUs per actor")
    p.add_argument("--json", action="store_true", help="the summary as JSON")
    decoding_flags(p)
    p.set_defaults(func=cmd_batch)


def _repository_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-batch", type=int, default=8, help="largest batch Triton's dynamic batcher forms")
    p.add_argument("--instances", type=int, default=1, help="model instances (one process and captioner each)")
    p.add_argument("--model-name", default="edge_caption")
    p.add_argument("--backend", default="auto")
