"""Export the benchmark model's bundle (bench_gpu.py runs this in a child process, so it is timed and a
failure is a recorded reason): the encoder and step as ONNX plus the torch.export programs (fp32, fp16).

Programs saved by torch.export load only on a torch at least as new as the one that saved them, so a
GPU machine exports its own bundle. The bundle is written beside its final place and renamed into it,
so a killed export never leaves a bundle that looks whole.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from isolate import Record


def export_bundle(spec: dict, record: Record) -> None:
    """`spec["model"]` (an export.testing factory, seed 0) to `spec["bundle"]`, targets onnx + torch."""
    from edge_caption.export import export, testing

    bundle = Path(spec["bundle"])
    started = time.monotonic()
    model = getattr(testing, spec["model"])(0).eval()
    size = model.config.encoder.image_size
    tokenizer = (testing.tiny_tokenizer(kind="bpe") if spec["model"].startswith("tiny")
                 else testing.tiny_tokenizer(vocab_size=model.config.decoder.vocab_size))
    partial = bundle.with_name(bundle.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    export(model, partial, tokenizer=tokenizer, processor=testing.tiny_image_processor("vit", size=size),
           targets=("onnx", "torch"), overwrite=True, progress=False)
    shutil.rmtree(bundle, ignore_errors=True)
    partial.rename(bundle)
    record.save("bundle", str(bundle))
    record.save("export_s", round(time.monotonic() - started, 1))
