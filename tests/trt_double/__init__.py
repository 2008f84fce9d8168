"""Test doubles of TensorRT's Python API and cuda-python's runtime bindings.

They live with the tests, not in the package: they exist to prove our TensorRT code against the
documented API on machines without TensorRT or a GPU, and no user should mistake them for a runtime.
`install()` puts them where `import tensorrt` and `cuda.bindings.runtime` find them.
"""
from __future__ import annotations

import sys
import types

from . import cudart, tensorrt, trt8


def install(monkeypatch, *, version: str = "10.3.0", devices: list[tuple[int, int]] | None = None, strict: bool = True):
    """Make `import tensorrt` / `cuda.bindings.runtime` give the doubles for one test; returns (trt, cudart)."""
    cudart.reset(devices)
    monkeypatch.setattr(tensorrt, "__version__", version)
    trt8.select(monkeypatch, version)                 # 8.x: no STRONGLY_TYPED, no INT64
    monkeypatch.setattr(tensorrt, "STRICT", strict)
    monkeypatch.setitem(sys.modules, "tensorrt", tensorrt)
    cuda = types.ModuleType("cuda")
    bindings = types.ModuleType("cuda.bindings")
    cuda.bindings, bindings.runtime = bindings, cudart
    monkeypatch.setitem(sys.modules, "cuda", cuda)
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", cudart)
    return tensorrt, cudart
