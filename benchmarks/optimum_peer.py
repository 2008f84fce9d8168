"""Optimum's ONNX Runtime captioner as a peer, run by bench_cpu.py in Optimum's own environment.

Optimum pins an older transformers than ours, so it lives in its own virtual environment and this
script talks to bench_cpu.py through files: it reads the saved model and pixel values, times
`ORTModelForVision2Seq.generate()` for each workload and prints one JSON object.

    python benchmarks/optimum_peer.py MODEL_DIR PIXELS.npy WORKLOADS_JSON [--repeats N]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import measure  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", type=Path)
    parser.add_argument("pixels", type=Path)
    parser.add_argument("workloads", help='JSON list of {"name", "batch", "num_beams", "new_tokens"}')
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import optimum.onnxruntime as ortm
    import torch

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as onnx_dir:
        model = ortm.ORTModelForVision2Seq.from_pretrained(args.model, export=True)
        model.save_pretrained(onnx_dir)
        model = ortm.ORTModelForVision2Seq.from_pretrained(onnx_dir)
        export_s = time.perf_counter() - started
        pixels = torch.from_numpy(np.load(args.pixels))
        results = {}
        for work in json.loads(args.workloads):
            px = pixels[: work["batch"]]
            opts = dict(do_sample=False, num_beams=work["num_beams"], max_new_tokens=work["new_tokens"],
                        min_new_tokens=work["new_tokens"])
            run = lambda: model.generate(pixel_values=px, **opts)  # noqa: E731
            timing = measure(run, warmup=1, repeats=args.repeats)
            ids = run()[:, 1:].tolist()
            results[work["name"]] = {"total": timing, "token_ids": ids}
    import transformers
    import onnxruntime
    print(json.dumps({"export_s": export_s, "results": results,
                      "versions": {"optimum": _version("optimum"), "optimum-onnx": _version("optimum-onnx"),
                                   "transformers": transformers.__version__, "onnxruntime": onnxruntime.__version__}}))


def _version(package: str) -> str | None:
    import importlib.metadata as md
    try:
        return md.version(package)
    except md.PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
