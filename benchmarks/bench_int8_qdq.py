"""Does the int8 Q/DQ graph TensorRT would build from keep the shipped model's accuracy?

Calibrates the shipped default bundle's graphs to int8 Q/DQ (ONNX Runtime `quantize_static`, QDQ
format, symmetric, Conv/MatMul/Gemm) on frames of the *val* split, then scores fp32 and Q/DQ on the
*test* split with ONNX Runtime, greedy and beam 3 (the bundle's default). Acceptance (issue 7): the
Q/DQ graph keeps >= 97% of the fp32 CIDEr. Runs on a CPU; TensorRT is not needed.

    python benchmarks/bench_int8_qdq.py [--calibration 256] [--limit 1000]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from timing import write  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calibration", type=int, default=256, help="val images to calibrate on")
    parser.add_argument("--limit", type=int, default=1000, help="test images to score")
    args = parser.parse_args()

    from edge_caption import EdgeCaptioner
    from edge_caption.captioner import default_bundle_path
    from edge_caption.evaluation import evaluate
    from edge_caption.export.calibration import qdq_bundle
    from edge_caption.evaluation.scenes import write_split

    results = {"calibration_images": args.calibration, "test_images": args.limit, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        frames = write_split(Path(tmp) / "val", "val", count=args.calibration)
        started = time.perf_counter()
        qdq = qdq_bundle(default_bundle_path(), Path(tmp) / "qdq.ecap", frames, limit=args.calibration)
        results["calibration_s"] = time.perf_counter() - started
        for label, bundle in (("fp32", default_bundle_path()), ("int8-qdq", qdq)):
            for beams in (1, 3):
                with EdgeCaptioner(bundle, backend="onnxruntime") as cap:
                    r = evaluate(cap, "test", limit=args.limit, meteor=False, num_beams=beams, progress=False)
                results["runs"][f"{label} beams={beams}"] = {**r["metrics"], "images_per_s": r["images_per_s"]}
                print(f"{label:9s} beams={beams}: CIDEr {r['metrics']['CIDEr']:.4f}  BLEU-4 {r['metrics']['BLEU-4']:.4f}",
                      flush=True)
    for beams in (1, 3):
        kept = results["runs"][f"int8-qdq beams={beams}"]["CIDEr"] / results["runs"][f"fp32 beams={beams}"]["CIDEr"]
        results[f"cider_kept_beams{beams}"] = kept
        print(f"int8 Q/DQ keeps {kept:.1%} of the fp32 CIDEr (beams={beams}; acceptance: >= 97%)")
    print(write("int8_qdq_cpu", results))


if __name__ == "__main__":
    main()
