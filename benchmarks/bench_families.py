"""How each reference family scores on the scene test split, how big it is, and how fast it captions on this CPU.

For every bundle given: BLEU-4, CIDEr, ROUGE-L and exact-match rate on the test split (1000 images;
greedy and beam 3), the bundle's size, and CPU latency per caption at batch 1 (greedy and beam 3,
median over the first --latency-images test images, ONNX Runtime, preprocessing included).

    python benchmarks/bench_families.py BUNDLE [BUNDLE ...] [--json] [--name families_cpu] [--limit 1000]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from timing import bundle_size_mb, summarize, write  # noqa: E402


def latency_ms(captioner, frames, **decoding) -> dict[str, float]:
    captioner.caption(frames[0], **decoding)        # warm-up: ONNX Runtime allocates on the first run
    samples = []
    for frame in frames:
        start = time.perf_counter()
        captioner.caption(frame, **decoding)
        samples.append((time.perf_counter() - start) * 1e3)
    return {**summarize(samples), "images": len(samples)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundles", nargs="+", type=Path)
    parser.add_argument("--limit", type=int, default=None, help="test images to score (default: all 1000)")
    parser.add_argument("--latency-images", type=int, default=100)
    parser.add_argument("--name", default="families_cpu", help="results/NAME.json (default families_cpu)")
    parser.add_argument("--json", action="store_true", help="write benchmarks/results/NAME.json")
    args = parser.parse_args()

    from edge_caption import EdgeCaptioner
    from edge_caption.evaluation import evaluate
    from edge_caption.evaluation.scenes import split_samples

    frames = [s.image for s in split_samples("test", count=args.latency_images)]
    rows = []
    for path in args.bundles:
        with EdgeCaptioner(path, backend="onnxruntime") as captioner:
            row = {"bundle": str(path), "family": captioner.manifest.family, "size_mb": round(bundle_size_mb(path), 2)}
            for label, decoding in (("greedy", {"num_beams": 1}), ("beam3", {"num_beams": 3})):
                result = evaluate(captioner, "test", limit=args.limit, meteor=False, progress=False, **decoding)
                row[label] = {"metrics": result["metrics"], "images": result["images"],
                              "latency": latency_ms(captioner, frames, **decoding)}
            rows.append(row)
            g, b = row["greedy"], row["beam3"]
            print(f"{row['family']:18s} {row['size_mb']:5.1f} MB  greedy: CIDEr {g['metrics']['CIDEr']:.3f} "
                  f"BLEU-4 {g['metrics']['BLEU-4']:.3f} exact {g['metrics']['exact']:.3f} "
                  f"{g['latency']['median_ms']:.1f} ms | beam 3: CIDEr {b['metrics']['CIDEr']:.3f} "
                  f"BLEU-4 {b['metrics']['BLEU-4']:.3f} exact {b['metrics']['exact']:.3f} "
                  f"{b['latency']['median_ms']:.1f} ms", flush=True)
    if args.json:
        print(write(args.name, {"split": "test", "rows": rows,
                                     "command": "python benchmarks/bench_families.py " + " ".join(sys.argv[1:])}))
    else:
        print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
