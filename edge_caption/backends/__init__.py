"""Backends, one small module each (onnxruntime, tensorrt + tensorrt_static, torch_cuda/), behind the
short protocol in `base.py`; `selection.py` chooses one by name or by `backend="auto"`, recording why."""
from __future__ import annotations

from .base import Backend
from .selection import NAMES, create_backend, why_not_torch_cuda

__all__ = ["Backend", "create_backend", "why_not_torch_cuda", "NAMES"]
