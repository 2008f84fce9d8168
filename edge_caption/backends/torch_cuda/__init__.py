"""backend="torch-cuda": the bundle's torch.export programs on a CUDA GPU, where TensorRT is absent.

The only runtime code that imports torch, and only when the backend is chosen. `backend.py` runs the
programs; `programs.py` loads them.
"""
from __future__ import annotations

from .backend import TorchCudaBackend
from .programs import load_program, size_oblivious

__all__ = ["TorchCudaBackend", "load_program", "size_oblivious"]
