"""Does a bundle see what it is shown? Issue 19's acceptance numbers for one bundle, in one run.

On the scene generator's own test split, the foreign splits (drawn by other code: Pillow on scikit-image's
photos) and the empty-view set: COCO scores, single objects whose colour and shape are named right
(edge_caption.evaluation.naming), object scenes captioned empty, empty views captioned empty. Greedy
unless told otherwise, ONNX Runtime on the CPU. Needs the [eval] extra.

    python benchmarks/bench_foreign.py [BUNDLE] [--name foreign_before] [--json] [--limit N]

`--json` writes benchmarks/results/NAME.json. Without BUNDLE, the shipped default model.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from timing import bundle_size_mb, write  # noqa: E402

SETS = ("test", "foreign-val", "foreign-test", "empty")


def run(bundle: str | None, sets=SETS, *, limit: int | None = None, num_beams: int = 1) -> dict:
    from edge_caption import EdgeCaptioner
    from edge_caption.captioner import default_bundle_path
    from edge_caption.evaluation import evaluate
    from edge_caption.evaluation.naming import breakdown
    from edge_caption.evaluation.scenes import Thing

    path = Path(bundle) if bundle else default_bundle_path()
    results = {}
    with EdgeCaptioner(path, backend="onnxruntime") as captioner:
        for name in sets:
            started = time.perf_counter()
            result = evaluate(captioner, name, limit=limit, meteor=False, num_beams=num_beams)
            scenes = [[Thing(**o) for o in p["objects"]] for p in result["predictions"]]
            texts = [p["caption"] for p in result["predictions"]]
            results[name] = {"images": result["images"], "metrics": result["metrics"], "naming": result["naming"],
                             "single_objects_by_truth": breakdown(scenes, texts),
                             "seconds": round(time.perf_counter() - started, 1),
                             "wrong_examples": _wrong(result)}
            print(f"{name}: CIDEr {result['metrics']['CIDEr']:.3f}, {_lines(result['naming'])}", file=sys.stderr)
        model = f"{captioner.manifest.name}@{captioner.manifest.version}"
    return {"model": model, "bundle": str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path),
            "bundle_mb": round(bundle_size_mb(path), 2), "decoding": {"num_beams": num_beams},
            "renderer": {p: metadata.version(p) for p in ("pillow", "scikit-image")}, "sets": results}


def _lines(report: dict) -> str:
    from edge_caption.evaluation.naming import report_lines

    return "; ".join(report_lines(report))


def _wrong(result: dict, count: int = 8) -> list[dict]:
    """A few predictions that miss their references: what the model says instead."""
    misses = [p for p in result["predictions"] if p["caption"] not in p["references"]]
    return [{"id": p["id"], "caption": p["caption"], "reference": p["references"][0]} for p in misses[:count]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", nargs="?", help="a bundle directory (default: the shipped model)")
    parser.add_argument("--name", default="foreign", help="results/NAME.json")
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--limit", type=int, help="only the first N images of each set (a quick look)")
    parser.add_argument("--num-beams", type=int, default=1)
    parser.add_argument("--note", default="", help="said in the JSON, e.g. the machine in words")
    parser.add_argument("--json", action="store_true", help="write benchmarks/results/NAME.json")
    args = parser.parse_args()
    result = run(args.bundle, args.sets.split(","), limit=args.limit, num_beams=args.num_beams)
    if args.note:
        result = {"note": args.note, **result}
    print(json.dumps({k: v for k, v in result.items() if k != "sets"} | {
        "sets": {k: {"CIDEr": v["metrics"]["CIDEr"], **v["naming"]} for k, v in result["sets"].items()}}, indent=2))
    if args.json:
        print(f"wrote {write(args.name, result)}")


if __name__ == "__main__":
    main()
