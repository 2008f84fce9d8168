"""Florence-2-base's shapes (random weights) on the CPU: how long export takes, and where a caption goes
next to `generate()`'s.

The model has Florence-2-base's configuration (DaViT 1+1+9+1 blocks 128..1024 wide, 768x768 in, 577
image tokens; BART 6+6 layers, 768 wide, 51,289 tokens) with random weights, the processor the
checkpoints configure (bicubic 768x768, ImageNet mean/std) over a local tokenizer of that size, and
the "<CAPTION>" task. Ours: the fp32 ONNX bundle on ONNX Runtime, per stage (preprocess, encode,
decode) as `Caption.timings` reports them. generate(): the processor, then the vision tower + BART
encoder, then the whole generate() call (it encodes again inside). Both decode exactly
`--tokens` new tokens (min_new_tokens = max_new_tokens: random weights stop anywhere), greedy and
beam 3 (the checkpoints' default), and a column says whether the tokens are the same.

    python benchmarks/bench_florence2.py [--json] [--work DIR] [--repeats 3] [--tokens 20]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from timing import bundle_size_mb, measure, write  # noqa: E402

SAMPLE = ROOT / "edge_caption" / "data" / "sample.jpg"
TASK = "<CAPTION>"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    parser.add_argument("--work", type=Path, help="where the bundle goes (default: a temporary folder)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        results = run(args.work or Path(scratch), args.repeats, args.tokens)
    path = write("florence2_cpu", results)
    print(json.dumps(results, indent=2) if args.json else f"written to {path}")


def run(work: Path, repeats: int, tokens: int) -> dict:
    import cv2
    import torch

    from edge_caption import EdgeCaptioner
    from edge_caption.export import export
    from edge_caption.export.testing_florence2 import florence2_base, florence2_processor

    torch.set_num_threads(len(__import__("os").sched_getaffinity(0)))
    model = florence2_base(0)
    processor = florence2_processor(size=768, image_tokens=577, vocab_size=model.config.text_config.vocab_size)
    params = sum(p.numel() for p in model.parameters())
    started = time.monotonic()
    bundle = export(model, work / "florence2-base.ecap", processor=processor, prompt=TASK, overwrite=True,
                    progress=False)
    export_s = time.monotonic() - started

    frame = cv2.imread(str(SAMPLE))
    rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    rows: dict[str, dict] = {}
    with EdgeCaptioner(bundle, backend="onnxruntime") as cap:
        for beams in (1, 3):
            options = dict(num_beams=beams, max_new_tokens=tokens, min_new_tokens=tokens)
            timings: list[dict] = []
            total = measure(lambda: timings.append(cap.caption(frame, **options).timings), warmup=1, repeats=repeats)
            ours = cap.caption(frame, **options)
            stages = {k: statistics.median(t[k] for t in timings[1:]) for k in ("preprocess", "encode", "decode")}
            rows[f"beam{beams}"] = {"ours_onnxruntime_fp32": {**total, "stages_ms": stages},
                                    "generate": _generate(model, processor, rgb, options, repeats, ours.token_ids)}
    return {"model": "Florence-2-base shapes, random weights", "params": params, "task": TASK,
            "new_tokens": tokens, "export_s": round(export_s, 1), "bundle_mb": round(bundle_size_mb(bundle), 1),
            "note": "2-core CPU VM shared with other jobs: absolute times are noisy, compare within a run",
            "results": rows}


def _generate(model, processor, rgb, options: dict, repeats: int, ours: tuple) -> dict:
    import torch

    inputs = processor(text=TASK, images=rgb, return_tensors="pt")
    preprocess = measure(lambda: processor(text=TASK, images=rgb, return_tensors="pt"), warmup=1, repeats=repeats)

    @torch.no_grad()
    def encode():
        # what generate() runs once before decoding: the vision tower, the projection, BART's encoder
        m = model.model
        embeds = m.get_input_embeddings()(inputs["input_ids"])
        image = m.get_image_features(inputs["pixel_values"]).pooler_output
        mask = m.get_placeholder_mask(inputs["input_ids"], inputs_embeds=embeds, image_features=image)
        return m.language_model.encoder(inputs_embeds=embeds.masked_scatter(mask, image))

    with torch.no_grad():
        out = model.generate(**inputs, do_sample=False, **options)[0, 1:].tolist()
        total = measure(lambda: model.generate(**inputs, do_sample=False, **options), warmup=1, repeats=repeats)
    return {**total, "stages_ms": {"preprocess": preprocess["median_ms"],
                                   "encode": measure(encode, warmup=1, repeats=repeats)["median_ms"]},
            "same_tokens_as_ours": tuple(out) == tuple(ours)}


if __name__ == "__main__":
    main()
