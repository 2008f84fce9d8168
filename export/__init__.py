"""The export side (installed as `edge_caption.export`): PyTorch captioner -> engine bundle.

Nothing here imports torch at import time: `edge-caption build` on a Jetson needs onnx, not torch.
"""
from __future__ import annotations

from .api import export

__all__ = ["export"]
