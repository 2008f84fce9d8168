"""Variants of ours on W1, side by side with generate() in one run (bench_gpu.py --contenders):

    python benchmarks/bench_gpu.py --w1-only --contenders benchmarks/gpu_variants.py --out variants.json

Inductor's combo kernels fuse independent small kernels (the per-layer cache writes, say) into one
launch; at batch 1 a decoding step is launch-bound (DESIGN.md), so fewer launches is the question.
"""
from __future__ import annotations

from gpu_contenders import generate_eager, ours_torch, ours_torch_with
from isolate import Contender


def ours_combo_kernels(spec, record) -> None:
    ours_torch_with(spec, record, compile=True, inductor={"combo_kernels": True})


CONTENDERS = [
    Contender("generate() eager", "gpu_contenders:generate_eager", 60),
    Contender("ours, torch-cuda", "gpu_contenders:ours_torch", 120),
    Contender("ours, torch-cuda, combo kernels", "gpu_variants:ours_combo_kernels", 120),
]
__all__ = ["CONTENDERS", "generate_eager", "ours_torch"]
