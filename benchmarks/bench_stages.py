"""Where one caption's time goes on this CPU: ours (ONNX Runtime) per stage, next to `generate()`.

ViT-B/16 + GPT-2-small sized VisionEncoderDecoder with random weights, batch 1, beam 3, exactly
16 new tokens (min = max = 16), both sides from the same preprocessed pixel values.

    python benchmarks/bench_stages.py [--json] [--bundle DIR] [--repeats 5]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from timing import measure, write  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="write benchmarks/results/stages_cpu.json")
    parser.add_argument("--bundle", type=Path, help="reuse (or write) the exported bundle here")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import torch
    from edge_caption import EdgeCaptioner
    from edge_caption.export import export
    from edge_caption.export.testing import tiny_tokenizer, vit_gpt2_base

    torch.set_num_threads(len(__import__("os").sched_getaffinity(0)))
    model = vit_gpt2_base()
    bundle = args.bundle or Path(tempfile.mkdtemp()) / "vitgpt2-base.ecap"
    if not (bundle / "manifest.json").is_file():
        started = time.perf_counter()
        export(model, bundle, tokenizer=tiny_tokenizer(vocab_size=50257), name="vit-gpt2-base-random")
        print(f"export: {time.perf_counter() - started:.0f} s", file=sys.stderr)

    opts = dict(num_beams=3, max_new_tokens=16, min_new_tokens=16)
    pixels = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    captioner = EdgeCaptioner(bundle, backend="onnxruntime")
    stages: dict[str, list[float]] = {"encode": [], "decode": [], "total": []}

    def ours():
        caption = captioner.caption_pixels(pixels, **opts)[0]
        for key in stages:
            stages[key].append(caption.timings[key])
        return caption

    ours_total = measure(ours, warmup=1, repeats=args.repeats)
    ours_ids = ours().token_ids
    px = torch.from_numpy(pixels)

    def hf_generate():
        with torch.no_grad():
            return model.generate(pixel_values=px, do_sample=False, **opts)

    hf_total = measure(hf_generate, warmup=1, repeats=args.repeats)
    with torch.no_grad():
        hf_encode = measure(lambda: model.encoder(pixel_values=px), warmup=1, repeats=args.repeats)
    hf_ids = tuple(hf_generate()[0, 1:].tolist())

    result = {
        "workload": "ViT-B/16 + GPT-2 small (random weights), batch 1, beam 3, 16 new tokens, fp32, CPU",
        "ours_onnxruntime": {"total": ours_total,
                             "stages_median_ms": {k: float(np.median(v)) for k, v in stages.items()}},
        "hf_generate_eager": {"total": hf_total, "encoder_median_ms": hf_encode["median_ms"]},
        "speedup_vs_generate": hf_total["median_ms"] / ours_total["median_ms"],
        "identical_tokens": ours_ids == hf_ids,
    }
    print(f"ours (onnxruntime): {ours_total['median_ms']:.0f} ms per caption "
          f"(encode {result['ours_onnxruntime']['stages_median_ms']['encode']:.0f} ms, "
          f"decode {result['ours_onnxruntime']['stages_median_ms']['decode']:.0f} ms)")
    print(f"generate() eager:   {hf_total['median_ms']:.0f} ms per caption (encoder {hf_encode['median_ms']:.0f} ms)")
    print(f"speed-up {result['speedup_vs_generate']:.2f}x, identical tokens: {result['identical_tokens']}")
    if args.json:
        print(f"wrote {write('stages_cpu', result)}")
    else:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
