"""Which backend runs a bundle: the one asked for by name, or under `backend="auto"` the best one here,
with the reason recorded (TensorRT, then torch-cuda, then ONNX Runtime), importing no library for a no."""
from __future__ import annotations

from ..bundle import Bundle
from ..errors import BackendUnavailableError, OptionError
from .base import Backend, no_torch_programs

NAMES = ("auto", "tensorrt", "torch-cuda", "onnxruntime")


def create_backend(bundle: Bundle, backend: str = "auto", *, device: int | None = 0,
                   threads: int | None = None, cuda_graphs: bool = True) -> tuple[Backend, str]:
    """The backend asked for (or the best one here under "auto"), and why it was chosen.

    `threads`: CPU threads one call may use (None: every core this process may run on);
    `cuda_graphs`: whether GPU backends replay captured graphs."""
    if backend not in NAMES:
        raise OptionError(f"unknown backend {backend!r}; choose one of: {', '.join(NAMES)}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise OptionError(f"threads must be an integer >= 1 (or None for every core), got {threads!r}")
    if backend == "torch-cuda":
        return _torch_cuda(bundle, device, cuda_graphs), "asked for by name"
    if backend == "tensorrt":
        from .tensorrt import TensorRTBackend

        return TensorRTBackend(bundle, device=device, cuda_graphs=cuda_graphs), "asked for by name"
    skipped = {}
    if backend == "auto":
        from . import tensorrt

        skipped["tensorrt"] = tensorrt.why_not(bundle, device)
        if skipped["tensorrt"] is None:
            made = tensorrt.TensorRTBackend(bundle, device=device, cuda_graphs=cuda_graphs)
            return made, f"tensorrt ({made.describe}): an engine matches this GPU"
        skipped["torch-cuda"] = why_not_torch_cuda(bundle)
        if skipped["torch-cuda"] is None:
            try:        # a CPU-only torch wheel beside a driver, an old torch: fall back, saying why
                made = _torch_cuda(bundle, device, cuda_graphs)
                return made, f"torch-cuda ({made.describe}): no TensorRT engine here; the bundle has torch programs"
            except BackendUnavailableError as exc:
                skipped["torch-cuda"] = exc.reason
    from .onnxruntime import OnnxRuntimeBackend

    made = OnnxRuntimeBackend(bundle, device=device, threads=threads)
    if backend == "onnxruntime":
        return made, "asked for by name"
    reasons = "; ".join(f"{name}: {why}" for name, why in skipped.items())
    return made, f"onnxruntime ({', '.join(made.providers)}); skipped {reasons}"


def why_not_torch_cuda(bundle: Bundle) -> str | None:
    """Why "auto" cannot use torch-cuda here (None: it can), without importing torch for a no."""
    import importlib.util

    from .cuda import cuda_device_count

    if bundle.manifest.torch_programs is None:
        return "the bundle has no torch programs (export with --targets onnx,torch)"
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed (pip install 'edge-caption[gpu]')"
    if cuda_device_count() == 0:
        return "no CUDA GPU"
    return None


def _torch_cuda(bundle: Bundle, device: int | str | None, cuda_graphs: bool) -> Backend:
    if bundle.manifest.torch_programs is None:      # said before importing torch: it is the first fix
        raise no_torch_programs(bundle)
    try:
        from .torch_cuda import TorchCudaBackend
    except ImportError as exc:
        raise BackendUnavailableError(f"backend='torch-cuda' needs torch ({exc.name} is missing): "
                                      "pip install 'edge-caption[gpu]'", reason=f"{exc.name} is missing") from exc
    return TorchCudaBackend(bundle, device=device, cuda_graphs=cuda_graphs)

