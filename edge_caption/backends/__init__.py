"""Backends, one small module each, chosen by name or by `backend="auto"` with the reason recorded."""
from __future__ import annotations

from ..bundle import Bundle
from ..errors import BackendUnavailableError, OptionError
from .base import Backend

NAMES = ("auto", "tensorrt", "torch-cuda", "onnxruntime")

# Backends that later issues add; until then asking for one by name says so plainly.
_NOT_YET = {
    "torch-cuda": "the torch-cuda backend is not part of this release yet; use backend=\"onnxruntime\"",
}


def create_backend(bundle: Bundle, backend: str = "auto", *, device: int | None = 0,
                   threads: int | None = None) -> tuple[Backend, str]:
    """The backend asked for (or the best one here under "auto"), and why it was chosen.

    `threads`: CPU threads one call may use (None: every core this process may run on)."""
    if backend not in NAMES:
        raise OptionError(f"unknown backend {backend!r}; choose one of: {', '.join(NAMES)}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise OptionError(f"threads must be an integer >= 1 (or None for every core), got {threads!r}")
    if backend in _NOT_YET:
        raise BackendUnavailableError(_NOT_YET[backend])
    if backend == "tensorrt":
        from .tensorrt import TensorRTBackend

        return TensorRTBackend(bundle, device=device), "asked for by name"
    skipped = {}
    if backend == "auto":
        from . import tensorrt

        skipped["tensorrt"] = tensorrt.why_not(bundle, device)
        if skipped["tensorrt"] is None:
            made = tensorrt.TensorRTBackend(bundle, device=device)
            return made, f"tensorrt ({made.describe}): an engine matches this GPU"
    from .onnxruntime import OnnxRuntimeBackend

    made = OnnxRuntimeBackend(bundle, device=device, threads=threads)
    if backend == "onnxruntime":
        return made, "asked for by name"
    skipped.update({name: why.split(';')[0] for name, why in _NOT_YET.items()})
    reasons = "; ".join(f"{name}: {why}" for name, why in skipped.items())
    return made, f"onnxruntime ({', '.join(made.providers)}); skipped {reasons}"


__all__ = ["Backend", "create_backend", "NAMES"]
