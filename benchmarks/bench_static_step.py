"""What the TensorRT-shaped step costs where it is not meant to run: ONNX Runtime on a CPU.

The static step (export/static_step.py) is shaped for TensorRT: a max-length cache it rewrites each
step (the in-graph beam Gather), attention over every position (later ones masked), the top-k in the
graph. On a CPU the dynamic step reads only the positions filled so far, so it should be faster;
this measures by how much, on W3 (ViT-B/16 + GPT-2 small sized, random weights), batch 1 and 8,
greedy and beam 3, up to 16 new tokens (no processors: the static path reads only the top-k) and
exactly 16 (min_new_tokens: it reads whole logits rows), and checks both give the same tokens.

    python benchmarks/bench_static_step.py [--json] [--work DIR] [--repeats 5]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from timing import measure, write  # noqa: E402

NEW_TOKENS = 16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="write benchmarks/results/static_step_cpu.json")
    parser.add_argument("--work", type=Path, help="keep the exported W3 bundle here between runs")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        result = bench(args.work or Path(scratch), args.repeats)
    print(json.dumps(result["rows"], indent=2))
    if args.json:
        print(f"wrote {write('static_step_cpu', result)}", file=sys.stderr)


def bench(work: Path, repeats: int) -> dict:
    from edge_caption.backends.onnxruntime import OnnxRuntimeBackend
    from edge_caption.bundle import Bundle
    from edge_caption.decoding import decode
    from edge_caption.export import export
    from edge_caption.export.testing import tiny_tokenizer, vit_gpt2_base
    from edge_caption.options import DecodeOptions

    bundle_dir = work / "w3-static.ecap"
    if not (bundle_dir / "manifest.json").is_file():
        export(vit_gpt2_base(), bundle_dir, tokenizer=tiny_tokenizer(vocab_size=50257), targets=("onnx", "tensorrt"),
               name="vit-gpt2-base-random", overwrite=True)
    bundle = Bundle.open(bundle_dir)
    backends = {"dynamic step": OnnxRuntimeBackend(bundle), "static step": OnnxRuntimeBackend(bundle, static_step=True)}
    pixels = np.random.default_rng(0).standard_normal((8, 3, 224, 224)).astype(np.float32)
    memory = {b: backends["dynamic step"].encode(pixels[:b]) for b in (1, 8)}
    rows = []
    for batch in (1, 8):
        for beams in (1, 3):
            for exact in (False, True):
                opts = DecodeOptions(num_beams=beams, max_new_tokens=NEW_TOKENS,
                                     min_new_tokens=NEW_TOKENS if exact else 0)
                row = {"batch": batch, "num_beams": beams,
                       "tokens": f"exactly {NEW_TOKENS}" if exact else f"up to {NEW_TOKENS}"}
                found = {}
                for name, backend in backends.items():
                    run = lambda: decode(backend, bundle.manifest, memory[batch], opts)  # noqa: E731
                    timing = measure(run, warmup=1, repeats=repeats)
                    found[name] = [[h.token_ids for h in per] for per in run()]
                    row[f"{name} ms per caption"] = timing["median_ms"] / batch
                    print(f"b{batch} beam{beams} {row['tokens']:<12} {name}: {timing['median_ms'] / batch:7.1f} ms",
                          file=sys.stderr, flush=True)
                row["static / dynamic"] = row["static step ms per caption"] / row["dynamic step ms per caption"]
                row["same tokens"] = found["static step"] == found["dynamic step"]
                row["generated"] = max(len(h[0]) for h in found["dynamic step"])
                rows.append(row)
    return {"workload": "W3 (ViT-B/16 + GPT-2 small, random weights) decoding only (the encoder excluded), "
                        "ONNX Runtime CPU, fp32", "rows": rows}


if __name__ == "__main__":
    main()
