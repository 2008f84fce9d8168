"""edge-caption: fast image captioning on NVIDIA GPUs and CPUs, from Jetson to H100.

    from edge_caption import EdgeCaptioner
    captioner = EdgeCaptioner("vitgpt2.ecap")
    print(captioner.caption(frame).text)

Importing this package loads no ONNX Runtime, TensorRT, CUDA or torch: a backend loads its
library when it is made.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import (BackendUnavailableError, BundleError, EdgeCaptionError, EngineMismatchError, ExportError,
                     FrameError, OptionError, SourceError)
from .options import DecodeOptions
from .types import Caption, CaptionEvent

__version__ = "0.1.0"

if TYPE_CHECKING:       # type checkers and IDEs see the class; at run time __getattr__ loads it on first use
    from .captioner import EdgeCaptioner


def __getattr__(name: str):
    # EdgeCaptioner pulls in cv2 and the decoding loop; load it on first use, not on import.
    if name == "EdgeCaptioner":
        from .captioner import EdgeCaptioner

        return EdgeCaptioner
    raise AttributeError(f"module 'edge_caption' has no attribute {name!r}")

__all__ = [
    "EdgeCaptioner", "Caption", "CaptionEvent", "DecodeOptions", "EdgeCaptionError", "FrameError", "OptionError",
    "ExportError", "BundleError", "EngineMismatchError", "BackendUnavailableError", "SourceError", "__version__",
]
