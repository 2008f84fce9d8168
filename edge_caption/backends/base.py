"""The short protocol every backend implements: load (its constructor), encode, decode, close.

How a backend decodes is one of the contracts in `edge_caption/decoding/contract.py`: a dynamic
`step`, a `static_session` over the TensorRT-shaped step, or the whole search on its device."""
from __future__ import annotations

import re
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import BackendUnavailableError


class Backend(Protocol):
    name: str

    def encode(self, pixel_values: np.ndarray) -> dict[str, np.ndarray]:
        """float32 [B,3,H,W] -> the encoder outputs the step reads (the manifest's `memory`), by name."""

    def close(self) -> None:
        """Release sessions and device memory; the backend is unusable afterwards."""


@runtime_checkable
class DevicePreprocessing(Protocol):
    """A backend that resizes and normalises frames where it encodes them (a GPU): the uint8 frames
    travel, not float pixels, and the result goes straight to `encode`."""

    def preprocess_frames(self, frames: list[np.ndarray], color: str) -> Any:
        """uint8 [H,W,3] frames in `color` order ("rgb" or "bgr") -> pixel values on the device, the
        numbers `edge_caption.preprocess.preprocess` gives, ready for `encode`."""


def no_torch_programs(bundle) -> BackendUnavailableError:
    """The error for a bundle exported without targets "torch" (said before torch is imported)."""
    return BackendUnavailableError(f"{bundle.path} has no torch programs; re-export it with --targets onnx,torch "
                                   "(or use backend='tensorrt' / 'onnxruntime')",
                                   reason="the bundle has no torch programs")


def parse_version(text: str) -> tuple[int, int, int]:
    """The one version parser: '10.3.0.30' -> (10, 3, 0), '2.5.1+cu121' -> (2, 5, 1), '8.9' -> (8, 9, 0).

    Compare the tuples, never the strings ("9.0" > "10.0" as text). Engines are tied to
    major.minor.patch; a missing part counts as 0, so "10.3" and "10.3.0" are the same version."""
    parts = [int(part) for part in re.findall(r"\d+", str(text))[:3]]
    return (*parts, *[0] * (3 - len(parts)))
