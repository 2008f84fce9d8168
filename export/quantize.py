"""int8 bundles for ONNX Runtime: the weights of every matrix product stored as int8.

This is ONNX Runtime's dynamic quantization (`onnxruntime.quantization.quantize_dynamic`): int8
weights, activations quantized per call, no calibration set needed. On a CPU the decoder step is
bound by the bytes of weights it reads per token, so a quarter of the bytes is most of the gain.
Only MatMul / Gemm are quantized: ConvInteger is slower than fp32 convolution on ONNX Runtime's CPU
kernels (measured on the shipped model: 5.3 vs 3.7 ms per caption), and the embedding tables stay
fp32 because a Gather reads one row per token anyway.

TensorRT wants a different int8 graph (static Q/DQ from calibration); that is `edge-caption build`'s
job. Works from a bundle's ONNX, so no torch is needed.
"""
from __future__ import annotations

import logging
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Callable

from edge_caption.bundle import Bundle
from edge_caption.errors import ExportError
from edge_caption.manifest import MANIFEST_FILE

QUANTIZABLE = ("int8",)


def quantize_bundle(source: str | Path, output: str | Path, *, precision: str = "int8", overwrite: bool = False,
                    progress: bool | Callable[[str], None] = True, sources: tuple = ()) -> Path:
    """Write an int8 copy of the fp32 bundle `source` to `output`; returns `output`.

    `sources`: further folders `output` must keep clear of (the model an fp32 bundle was exported from)."""
    from edge_caption.progress import reporter
    from .writer import staging, write_manifest

    if precision not in QUANTIZABLE:
        raise ExportError(f"a bundle can be quantized to {', '.join(QUANTIZABLE)} here, not {precision!r}; "
                          "fp16, bf16 and fp8 engines come from `edge-caption build` on the GPU")
    bundle = Bundle.open(source)
    manifest = bundle.manifest
    if manifest.precision != "fp32":
        raise ExportError(f"{bundle.path} is already {manifest.precision}; quantize the fp32 bundle it came from")
    say = reporter(progress, "export")
    graphs = ((manifest.encoder, False), (manifest.decoder_step, True))
    # TensorRT engines were built from the fp32 graphs, and TensorRT's int8 comes from calibrated Q/DQ
    # graphs (calibration.py), not these: neither the engines nor the TensorRT-shaped step carry over
    static = [manifest.static_step.file] if manifest.static_step else []
    if manifest.torch_programs:
        static += [*manifest.torch_programs.encoder.values(), *manifest.torch_programs.static_step.values()]
    if static:
        say("leaving out the TensorRT-shaped step and the torch programs: int8 for TensorRT is `edge-caption "
            "build --precision int8 --calibration DIR` on the fp32 bundle; torch-cuda runs fp16/bf16")
    left_out = {MANIFEST_FILE, *(g.file for g, _ in graphs), *(e.file for e in manifest.engines), *static}
    with staging(Path(output), overwrite, sources=(bundle.path, *sources)) as scratch:
        for name in manifest.files:
            if name not in left_out:
                (scratch / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(bundle.file(name), scratch / name)
        for graph, per_channel in graphs:
            say(f"quantizing {graph.file} to int8")
            quantize_graph(bundle.file(graph.file), scratch / graph.file, per_channel=per_channel)
        write_manifest(scratch, replace(manifest, precision=precision, engines=(), static_step=None,
                                                torch_programs=None))
    say(f"bundle written to {output}")
    return Path(output)


def quantize_graph(source: Path, output: Path, *, per_channel: bool) -> None:
    """int8 weights for every MatMul / Gemm with a constant weight in the ONNX graph `source`.

    Per-channel scales for the decoder step, whose logits pick the tokens; the encoder keeps ONNX
    Runtime's default per-tensor scales. The captions this keeps on the shipped model are measured in
    benchmarks/results/cpu.json."""
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:  # pragma: no cover - onnx comes with the quantize extra
        raise ExportError('int8 quantization needs onnx: pip install "edge-caption[quantize]"') from exc
    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)    # its "consider pre-processing" advice is about CNN graphs
    try:
        quantize_dynamic(source, output, weight_type=QuantType.QInt8, per_channel=per_channel,
                         op_types_to_quantize=["MatMul", "Gemm"],
                         use_external_data_format=source.stat().st_size > 1_900_000_000,
                         extra_options={"MatMulConstBOnly": True})
    finally:
        logging.getLogger().setLevel(quiet)
