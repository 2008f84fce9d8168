"""The contenders of bench_gpu.py, each run in its own process by isolate.py: `fn(spec, record)`.

`spec` (written by bench_gpu.py): the model factory and device, the bundle, the images (.npy, one
array: W1's image first, then W2's), the 1280x720 frame, the workloads, warm-up and repeats. Each
contender saves per workload its timing, its tokens (for the agreement with generate()), and ours
also its Caption.timings, caption() of the frame, a torch.profiler count and a run under
torch.cuda.set_sync_debug_mode("error").
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from isolate import Record, Skip
from timing import measure, median

STEPS = 16                      # 16 new tokens: the prompt's step and one per new token but the last


def _torch(spec: dict):
    import torch

    device = torch.device(spec["device"])
    if device.type == "cuda" and not torch.cuda.is_available():
        raise Skip("torch sees no CUDA GPU")
    return torch, device, getattr(torch, spec["dtype"])


def _sync(torch, device) -> Callable[[], None] | None:
    return torch.cuda.synchronize if device.type == "cuda" else None


def _images(spec: dict, w: dict) -> np.ndarray:
    return np.load(spec["images"], mmap_mode="r")[w["start"]: w["start"] + w["batch"]].copy()


def _decoding(spec: dict, w: dict) -> dict[str, Any]:
    n = spec["new_tokens"]
    return dict(num_beams=w["num_beams"], max_new_tokens=n, min_new_tokens=n)


def _timed(spec: dict, record: Record, name: str, w: dict, run: Callable[[], list], torch, device,
           extra: Callable[[], dict] | None = None) -> None:
    tokens = run()                               # first call: compiles, captures graphs
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    row = measure(run, warmup=spec["warmup"], repeats=spec["repeats"], sync=_sync(torch, device))
    row.update(ms_per_caption=row["median_ms"] / w["batch"], captions_per_s=1e3 * w["batch"] / row["median_ms"],
               batch=w["batch"], tokens=[list(map(int, t)) for t in tokens])
    if device.type == "cuda":
        row["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
    if extra is not None:
        row.update(extra())
    record.data.setdefault("workloads", {})[name] = row
    record.save("workloads", record.data["workloads"])
    print(f"{name:<14} {row['ms_per_caption']:9.3f} ms per caption", file=sys.stderr, flush=True)


# ---- generate() ------------------------------------------------------------------------------
def _hf(spec: dict):
    torch, device, dtype = _torch(spec)
    from edge_caption.export import testing

    torch.manual_seed(0)
    model = getattr(testing, spec["model"])(0).eval().to(device, dtype)
    return torch, device, dtype, model


def _hf_workloads(spec: dict, record: Record, torch, device, dtype, model) -> None:
    for w in spec["workloads"]:
        px = torch.from_numpy(_images(spec, w)).to(device, dtype)
        options = dict(do_sample=False, **_decoding(spec, w))
        with torch.inference_mode():
            _timed(spec, record, w["name"], w,
                   lambda: model.generate(pixel_values=px, **options)[:, 1:].tolist(), torch, device)


def generate_eager(spec: dict, record: Record) -> None:
    """transformers' generate(), eager, in the run's dtype."""
    torch, device, dtype, model = _hf(spec)
    record.save("via", f"VisionEncoderDecoderModel.generate(), eager, {spec['dtype']}")
    _hf_workloads(spec, record, torch, device, dtype, model)


def generate_compiled(spec: dict, record: Record) -> None:
    """generate() with a static cache and torch.compile(decoder.forward, mode="reduce-overhead")."""
    torch, device, dtype, model = _hf(spec)
    record.save("via", f"generate(), cache_implementation='static', torch.compile(decoder.forward, "
                       f"mode='reduce-overhead'), {spec['dtype']}")
    model.generation_config.cache_implementation = "static"
    model.decoder.forward = torch.compile(model.decoder.forward, mode="reduce-overhead", fullgraph=False)
    _hf_workloads(spec, record, torch, device, dtype, model)


# ---- ours ------------------------------------------------------------------------------------
def ours_onnxruntime(spec: dict, record: Record) -> None:
    """EdgeCaptioner(bundle, backend="onnxruntime"): the CUDA execution provider on a GPU run (skipped
    without onnxruntime-gpu), the CPU on a CPU run."""
    import onnxruntime as ort

    from edge_caption import EdgeCaptioner

    if spec["device"] == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
        raise Skip(f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (pip install onnxruntime-gpu)")
    _need_bundle(spec)
    cap = EdgeCaptioner(spec["bundle"], backend="onnxruntime", device=0)
    record.save("via", f"EdgeCaptioner(bundle, backend='onnxruntime'), providers {ort.get_available_providers()}")
    _ours(spec, record, cap, None, None)


def ours_torch(spec: dict, record: Record) -> None:
    """Ours through the public API: EdgeCaptioner(bundle, backend="torch-cuda").caption_pixels(...).

    On a CPU run (no GPU) the same programs run on the CPU: TorchCudaBackend(device="cpu",
    dtype="float32") inside an EdgeCaptioner, which is how its logic is exercised without a GPU."""
    torch, device, _ = _torch(spec)
    from edge_caption import EdgeCaptioner

    _need_bundle(spec)
    if device.type == "cuda":
        cap = EdgeCaptioner(spec["bundle"], backend="torch-cuda")
        record.save("via", "EdgeCaptioner(bundle, backend='torch-cuda').caption_pixels / .caption")
        record.save("describe", str(getattr(cap._backend, "describe", "")))
    else:
        from edge_caption.backends.torch_cuda import TorchCudaBackend

        cap = EdgeCaptioner(spec["bundle"], backend="onnxruntime")
        cap._backend.close()
        cap._backend = TorchCudaBackend(cap.bundle, device="cpu", dtype="float32")
        record.save("via", "TorchCudaBackend(bundle, device='cpu', dtype='float32') inside EdgeCaptioner "
                           "(no GPU here: the torch programs on the CPU)")
    _ours(spec, record, cap, torch, device)


def ours_torch_uncompiled(spec: dict, record: Record) -> None:
    """Ours with the torch programs as loaded (no Inductor), CUDA graphs and the device loop still on:
    what compiling adds, and a row that stands when compiling fails or takes too long."""
    ours_torch_with(spec, record, compile=False)


def ours_torch_with(spec: dict, record: Record, **backend_options: Any) -> None:
    """Ours with TorchCudaBackend options the public API does not expose (compile=False, Inductor
    options), inside an EdgeCaptioner: for comparing variants on one GPU in one run."""
    torch, device, _ = _torch(spec)
    from edge_caption import EdgeCaptioner
    from edge_caption.backends.torch_cuda import TorchCudaBackend

    _need_bundle(spec)
    cap = EdgeCaptioner(spec["bundle"], backend="onnxruntime")
    cap._backend.close()
    # on a CPU run the programs run on the CPU (uncompiled there anyway): the row proves the wiring
    where = dict(device=0, dtype=spec["dtype"]) if device.type == "cuda" else dict(device="cpu", dtype="float32")
    cap._backend = TorchCudaBackend(cap.bundle, **where, **backend_options)
    record.save("via", f"TorchCudaBackend(bundle, {backend_options}) inside EdgeCaptioner")
    record.save("describe", cap._backend.describe)
    _ours(spec, record, cap, torch, device)


def _need_bundle(spec: dict) -> None:
    if not spec.get("bundle") or not (Path(spec["bundle"]) / "manifest.json").is_file():
        raise Skip(f"no bundle at {spec.get('bundle')} (the export failed or was not run: see its log)")


def _ours(spec: dict, record: Record, cap, torch, device) -> None:
    """Every workload through caption_pixels, then caption() of the frame; on a GPU, the profile and
    the sync-debug run of one W1 caption."""
    import torch as _t

    torch = torch or _t
    device = device or _t.device("cpu")
    w1 = spec["workloads"][0]
    for w in spec["workloads"]:
        px, options, seen = _images(spec, w), _decoding(spec, w), []

        def run():
            captions = cap.caption_pixels(px, **options)
            seen.append(captions[0].timings)
            return [c.token_ids for c in captions]

        _timed(spec, record, w["name"], w, run, torch, device,
               extra=lambda: {"caption_timings_ms": {k: median(t[k] for t in seen) for k in seen[0]}})
    frame = np.load(spec["frame"])
    seen = []
    options = _decoding(spec, w1)
    timing = measure(lambda: seen.append(cap.caption(frame, **options).timings), warmup=spec["warmup"],
                     repeats=spec["repeats"], sync=_sync(torch, device))
    timing["caption_timings_ms"] = {k: median(t[k] for t in seen) for k in seen[0]}
    timing["frame"] = f"{frame.shape[1]}x{frame.shape[0]} BGR uint8"
    record.save("caption_frame", timing)
    run = lambda: cap.caption_pixels(_images(spec, w1), **options)   # noqa: E731
    record.save("profile", profile(run, torch, device))
    record.save("sync_debug", sync_debug(run, torch, device))
    cap.close()


def profile(run: Callable[[], Any], torch, device) -> dict[str, Any]:
    """One W1 caption after warm-up under torch.profiler: CUDA kernels per decoding step, and host
    reads per caption (value reads, device-to-host copies, synchronisations)."""
    from torch.profiler import ProfilerActivity

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    run()
    with torch.profiler.profile(activities=activities) as prof:
        run()
    events = prof.key_averages()

    def count(*names: str) -> int:
        return sum(e.count for e in events if any(n in e.key for n in names))

    on_device = [e for e in events if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA]
    kernels = sum(e.count for e in on_device if not e.key.startswith(("Memcpy", "Memset")))
    to_host = sum(e.count for e in on_device if e.key.startswith("Memcpy DtoH"))
    scalar = count("aten::_local_scalar_dense")
    syncs = {n: count(n) for n in ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")}
    # a read is a value crossing to the host: a device-to-host copy or an .item(); the waits that go
    # with them (and the profiler's own synchronisation at its end) are listed apart, not counted twice
    return {"steps": STEPS, "cuda_kernels": kernels, "cuda_kernels_per_step": kernels / STEPS,
            "host_reads_per_caption": scalar + to_host,
            "local_scalar_dense": scalar, "memcpy_dtoh": to_host, **syncs,
            "graph_launches": count("cudaGraphLaunch"), "memcpy_calls": count("cudaMemcpyAsync", "cudaMemcpy"),
            "top_ops": [{"op": e.key, "count": e.count, "cpu_ms": e.cpu_time_total / 1e3}
                        for e in sorted(events, key=lambda e: -e.cpu_time_total)[:12]]}


def sync_debug(run: Callable[[], Any], torch, device) -> dict[str, Any]:
    """One W1 caption under torch.cuda.set_sync_debug_mode("error"): PASS if nothing synchronised."""
    if device.type != "cuda":
        return {"result": "n/a on CPU"}
    run()
    torch.cuda.synchronize()
    try:
        torch.cuda.set_sync_debug_mode("error")
        run()
        return {"result": "PASS"}
    except Exception as exc:                       # noqa: BLE001 - the error text is the finding
        return {"result": "FAIL", "error": f"{type(exc).__name__}: {str(exc)[:600]}"}
    finally:
        torch.cuda.set_sync_debug_mode(0)
