"""Do the seeds' other training ideas help? Val and test CIDEr of training runs, on both test sets.

Each run folder (`edge-caption train`, with --cell gru, or --init RUN --finetune scst|gan) is decoded
greedily by the runtime's decoding loop over its PyTorch modules (token for token what its exported
bundle gives: tests/export/test_families.py) and scored like `edge-caption eval` on the original val
and test splits and the foreign ones. Choose on the val columns; the test columns are the report.

    python benchmarks/bench_seq.py RUN_DIR ... [--name seq_training] [--json] [--limit N]

`--json` writes benchmarks/results/NAME.json. Needs torch (the [export] extra) and the [eval] extra.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPLITS = ("val", "test", "foreign-val", "foreign-test")


def samples(split: str, limit: int | None):
    if split.startswith("foreign"):
        from edge_caption.evaluation.foreign import split_samples
    else:
        from edge_caption.evaluation.scenes import split_samples
    return list(split_samples(split, count=limit))


def run(runs: list[str], *, limit: int | None = None, splits=SPLITS) -> dict:
    from edge_caption.export import families
    from edge_caption.export.module_backend import ModuleBackend
    from edge_caption.export.train import validate

    data = {split: samples(split, limit) for split in splits}
    results = {}
    for folder in runs:
        model = families.load(folder)
        summary_file = Path(folder) / "summary.json"
        summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
        row = {"family": model.family, "cell": getattr(model, "cell_type", None),
               "finetune": summary.get("finetune"), "init": summary.get("init"), "steps": summary.get("steps"),
               "best_step": summary.get("best_val", {}).get("step"), "train_time_s": summary.get("train_time_s")}
        for split, items in data.items():
            started = time.perf_counter()
            scores = validate(model, items, ModuleBackend)
            row[split] = {"CIDEr": round(scores["CIDEr"], 4), "BLEU-4": round(scores["BLEU-4"], 4),
                          "exact": round(scores["exact"], 4), "images": len(items),
                          "seconds": round(time.perf_counter() - started, 1)}
            print(f"{folder} {split}: CIDEr {scores['CIDEr']:.3f} exact {scores['exact']:.3f}", flush=True)
        results[str(folder)] = row
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="training run folders")
    parser.add_argument("--name", default="seq_training")
    parser.add_argument("--json", action="store_true", help="write benchmarks/results/NAME.json")
    parser.add_argument("--limit", type=int, help="images per split (default: each split's size)")
    parser.add_argument("--note", default="greedy, PyTorch modules through the runtime's decoding loop, "
                        "2-core CPU VM shared with other jobs")
    args = parser.parse_args(argv)
    results = {"note": args.note, "runs": run(args.runs, limit=args.limit)}
    print(json.dumps(results, indent=1))
    if args.json:
        out = ROOT / "benchmarks" / "results" / f"{args.name}.json"
        out.write_text(json.dumps(results, indent=1) + "\n")
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
