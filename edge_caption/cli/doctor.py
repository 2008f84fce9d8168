"""`edge-caption doctor`: what this machine offers each backend, found without importing torch."""
from __future__ import annotations

import argparse
import importlib.metadata as md
import importlib.util
import json
import os
import platform
import shutil
import subprocess


def _version(package: str) -> str | None:
    try:
        return md.version(package)
    except md.PackageNotFoundError:
        return None


def _gpus() -> str:
    if shutil.which("nvidia-smi") is None:
        return "none found (no nvidia-smi)"
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"nvidia-smi failed: {exc}"
    return "; ".join(line.strip() for line in out.stdout.splitlines() if line.strip()) or "none"


def _opencv() -> tuple[str, str]:
    try:
        import cv2
    except ImportError:
        return "not installed: pip install opencv-python-headless (or use JetPack's on a Jetson)", "-"
    from ..stream.cv import gstreamer_available, has_gui

    gstreamer = "yes" if gstreamer_available() else "no (csi:// and pipeline sources need JetPack's OpenCV)"
    gui = "yes" if has_gui() else "no (headless: --show needs a non-headless OpenCV)"
    origin = cv2.__file__ or "?"
    return f"{cv2.__version__} ({origin}), window support: {gui}", gstreamer


def _tensorrt() -> str:
    if importlib.util.find_spec("tensorrt") is None:
        return "not installed (the tensorrt backend needs it: JetPack on Jetson, pip install tensorrt on a desktop)"
    try:    # the PyPI bindings install without NVIDIA's libraries and then fail here: say so
        import tensorrt
    except Exception as exc:
        return f"installed but does not import: {type(exc).__name__}: {exc}"
    return f"{tensorrt.__version__} (engines are tied to this version: edge-caption build BUNDLE after upgrading)"


def report() -> dict[str, str]:
    facts: dict[str, str] = {
        "python": f"{platform.python_version()} ({platform.machine()})",
        "gpus": _gpus(),
    }
    try:
        import onnxruntime as ort

        facts["onnxruntime"] = f"{ort.__version__}, providers: {', '.join(ort.get_available_providers())}"
    except ImportError:
        facts["onnxruntime"] = "not installed: pip install onnxruntime"
    facts["tensorrt"] = _tensorrt()
    facts["cuda-python"] = _version("cuda-python") or _version("cuda-bindings") or "not installed"
    facts["torch"] = _version("torch") or "not installed (only export and the torch-cuda backend need it)"
    facts["opencv"], facts["opencv gstreamer"] = _opencv()
    facts["beam search"], facts["cuda beam kernels"] = _beam()
    return facts


def _beam() -> tuple[str, str]:
    from ..decoding import kernels
    from ..decoding.core import ENV, core_name

    core = f"{core_name()} core"
    if ENV in os.environ:
        core += f" ({ENV}={os.environ[ENV]})"
    elif core_name() == "python":
        core += " (the Cython extension is not built: reinstall with pip install -e .)"
    lib = kernels.load()
    built = "not built (nvcc was not found at install time)" if lib is None else \
        f"built, {lib.device_count()} GPU(s) usable"
    return core, built


def cmd_doctor(args: argparse.Namespace) -> int:
    facts = report()
    if args.json:
        print(json.dumps(facts, indent=2))
    else:
        for key, value in facts.items():
            print(f"{key:22s} {value}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="GPUs, CUDA, TensorRT, ONNX Runtime providers, OpenCV and GStreamer")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_doctor)
