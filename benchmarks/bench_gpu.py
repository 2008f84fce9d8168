"""Ours on one NVIDIA GPU next to what users would otherwise run there: every peer in one run.

W1: a ViT-B/16 + GPT-2-small sized VisionEncoderDecoder (random weights), batch 1, beam 3, exactly 16
new tokens, fp16, timed from preprocessed pixel values to token ids:
- `transformers` `generate()`, eager, fp16;
- `generate()` with a static cache and `torch.compile` (mode "reduce-overhead"), where it works (the
  reason is recorded where it does not);
- ours on ONNX Runtime's CUDA execution provider, where onnxruntime-gpu is installed (fp32 graphs);
- ours, backend="torch-cuda" (the TensorRT-shaped step as a torch.export program, fp16, CUDA graphs).
W2: batch 8 and 32, beam 3, 16 tokens: captions/s and the batch's p50 / p99 latency.
For each: peak GPU memory, and whether its tokens are `generate()` fp16's (agreement). Then ours'
per-step breakdown from torch.profiler: kernels, CUDA graph launches, host syncs and copies per step.

    python benchmarks/bench_gpu.py [--json] [--work DIR] [--repeats 20]
    python benchmarks/bench_gpu.py --smoke        # a tiny model on whatever device is here (CI)

The JSON (benchmarks/results/gpu.json, with gpu.png) names the GPU, driver, CUDA and torch.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from timing import chart, machine, write  # noqa: E402

NEW_TOKENS = 16
W1 = {"name": "W1 b1 beam3", "batch": 1, "num_beams": 3}
W2 = [{"name": f"W2 b{b} beam3", "batch": b, "num_beams": 3} for b in (8, 32)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="write benchmarks/results/gpu.json and gpu.png")
    parser.add_argument("--work", type=Path, help="keep the exported model and bundle here between runs")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--smoke", action="store_true", help="tiny model, fp32, few repeats, any device")
    args = parser.parse_args()
    import torch

    if not args.smoke and not torch.cuda.is_available():
        sys.exit("bench_gpu.py needs a CUDA GPU (torch.cuda.is_available() is False); --smoke runs it anywhere")
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    result = bench(work, repeats=3 if args.smoke else args.repeats, smoke=args.smoke)
    print(json.dumps(summary(result), indent=2))
    if args.json and not args.smoke:
        print(f"wrote {write('gpu', result)}")
        groups = {w: {who: row["ms_per_caption"] for who, c in result["contenders"].items()
                      if (row := c.get("workloads", {}).get(w))} for w in [W1["name"], *[x["name"] for x in W2]]}
        print(f"wrote {chart('gpu', groups, ylabel='ms per caption (lower is better)', log=True, title=result['title'])}")


def bench(work: Path, *, repeats: int, smoke: bool) -> dict:
    import torch

    from edge_caption.export import export
    from edge_caption.export import testing

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.float16 if cuda and not smoke else torch.float32
    model = (testing.tiny_vit_gpt2(0) if smoke else testing.vit_gpt2_base()).eval()
    bundle = work / ("tiny.ecap" if smoke else "w1.ecap")
    if not (bundle / "manifest.json").is_file():
        tokenizer = testing.tiny_tokenizer(kind="bpe") if smoke else testing.tiny_tokenizer(vocab_size=50257)
        export(model, bundle, tokenizer=tokenizer, targets=("onnx", "torch"), overwrite=True)
    size = model.config.encoder.image_size
    workloads = [W1] if smoke else [W1, *W2]
    pixels = np.random.default_rng(0).standard_normal((max(w["batch"] for w in workloads), 3, size, size)
                                                      ).astype(np.float32)
    hf = model.to(device, dtype)
    contenders: dict[str, dict] = {}
    reference: dict[str, list] = {}

    def hf_runner(m) -> Callable[[dict], Callable[[], Any]]:
        def make(w):
            px = torch.from_numpy(pixels[: w["batch"]]).to(device, dtype)
            return lambda: m.generate(pixel_values=px, do_sample=False, num_beams=w["num_beams"],
                                      max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)[:, 1:].tolist()
        return make

    contenders["generate() eager"] = run_contender(hf_runner(hf), workloads, repeats, reference, device)
    contenders["generate() static cache + torch.compile"] = (
        {"skipped": "--smoke"} if smoke else compiled_generate(hf, hf_runner, workloads, repeats, reference, device))
    contenders["ours, ONNX Runtime CUDA EP"] = ours_onnxruntime(bundle, pixels, workloads, repeats, reference, device)
    contenders["ours, torch-cuda"] = ours_torch(bundle, pixels, workloads, repeats, reference, device,
                                                "float16" if dtype == torch.float16 else "float32")
    base = contenders["generate() eager"]["workloads"]
    for c in contenders.values():
        for name, row in c.get("workloads", {}).items():
            row["speedup_vs_generate_eager"] = base[name]["ms_per_caption"] / row["ms_per_caption"]
    ours = contenders["ours, torch-cuda"]
    return {"title": f"{'tiny (smoke)' if smoke else 'W1/W2: ViT-B/16 + GPT-2 small'}, {NEW_TOKENS} new tokens, "
                     f"{torch.cuda.get_device_name() if cuda else 'CPU'}",
            "device": gpu_facts(), "dtype": str(dtype).replace("torch.", ""), "new_tokens": NEW_TOKENS,
            "contenders": contenders, "ours_breakdown": ours.pop("breakdown", None)}


def run_contender(make: Callable[[dict], Callable[[], Any]], workloads: list[dict], repeats: int,
                  reference: dict[str, list], device) -> dict:
    import torch

    found: dict[str, Any] = {"workloads": {}}
    for w in workloads:
        run = make(w)
        tokens = run()                                   # warm-up (compiles, captures graphs)
        run()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        samples = []
        for _ in range(repeats):
            sync(device)
            start = time.perf_counter()
            run()
            sync(device)
            samples.append((time.perf_counter() - start) * 1e3)
        samples.sort()
        median = statistics.median(samples)
        row = {"median_ms": median, "p50_ms": median, "p99_ms": samples[min(len(samples) - 1, int(0.99 * len(samples)))],
               "ms_per_caption": median / w["batch"], "captions_per_s": 1e3 * w["batch"] / median, "repeats": repeats}
        if device.type == "cuda":
            row["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
        if w["name"] not in reference:
            reference[w["name"]] = tokens
        row["agreement_with_generate_eager"] = sum(a == b for a, b in zip(tokens, reference[w["name"]])) / len(tokens)
        found["workloads"][w["name"]] = row
        print(f"{w['name']:<14} {median / w['batch']:9.2f} ms per caption", file=sys.stderr, flush=True)
    return found


def compiled_generate(hf, hf_runner, workloads, repeats, reference, device) -> dict:
    import torch

    try:
        hf.generation_config.cache_implementation = "static"
        hf.decoder.forward = torch.compile(hf.decoder.forward, mode="reduce-overhead", fullgraph=False)
        return run_contender(hf_runner(hf), workloads, repeats, reference, device)
    except Exception as exc:   # what fails varies with the transformers / torch pair: record it
        return {"skipped": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
    finally:
        hf.generation_config.cache_implementation = None


def ours_onnxruntime(bundle, pixels, workloads, repeats, reference, device) -> dict:
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return {"skipped": f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (pip install onnxruntime-gpu)"}
    from edge_caption.backends.onnxruntime import OnnxRuntimeBackend
    from edge_caption.bundle import Bundle

    b = Bundle.open(bundle)
    return run_contender(_decoder(OnnxRuntimeBackend(b, device=0), b.manifest, pixels), workloads, repeats,
                         reference, device)


def ours_torch(bundle, pixels, workloads, repeats, reference, device, dtype: str) -> dict:
    from edge_caption.backends.torch_cuda import TorchCudaBackend
    from edge_caption.bundle import Bundle

    b = Bundle.open(bundle)
    backend = TorchCudaBackend(b, device=0 if device.type == "cuda" else "cpu", dtype=dtype)
    make = _decoder(backend, b.manifest, pixels)
    found = run_contender(make, workloads, repeats, reference, device)
    found["describe"] = backend.describe
    found["breakdown"] = profile(make(W1), device)
    return found


def _decoder(backend, manifest, pixels) -> Callable[[dict], Callable[[], Any]]:
    from edge_caption.decoding import decode
    from edge_caption.options import DecodeOptions

    def make(w):
        px = pixels[: w["batch"]]
        opts = DecodeOptions(num_beams=w["num_beams"], max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
        return lambda: [list(per[0].token_ids) for per in decode(backend, manifest, backend.encode(px), opts)]
    return make


def profile(run: Callable[[], Any], device) -> dict:
    """One W1 caption under torch.profiler: what a decoder step costs in kernels, launches and syncs."""
    import torch
    from torch.profiler import ProfilerActivity

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    run()
    with torch.profiler.profile(activities=activities) as prof:
        run()
    events = prof.key_averages()
    count = lambda *names: sum(e.count for e in events if any(n in e.key for n in names))  # noqa: E731
    kernels = sum(e.count for e in events if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA)
    steps = NEW_TOKENS + 1                               # the prompt step and one per new token but the last
    return {"steps": steps, "cuda_kernels_per_step": kernels / steps,
            "graph_launches_per_step": count("cudaGraphLaunch") / steps,
            "host_syncs_per_step": count("cudaStreamSynchronize", "cudaDeviceSynchronize") / steps,
            "memcpy_per_step": count("cudaMemcpyAsync", "Memcpy") / steps,
            "top_ops": [{"op": e.key, "count": e.count, "cpu_ms": e.cpu_time_total / 1e3}
                        for e in sorted(events, key=lambda e: -e.cpu_time_total)[:12]]}


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def gpu_facts() -> dict:
    import subprocess

    import torch

    facts = {"torch": torch.__version__, "cuda": torch.version.cuda, **machine()}
    if torch.cuda.is_available():
        facts["gpu"] = torch.cuda.get_device_name()
        facts["compute_capability"] = ".".join(map(str, torch.cuda.get_device_capability()))
        try:
            facts["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                             capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            facts["driver"] = f"unknown ({exc})"
    return facts


def summary(result: dict) -> dict:
    table = {}
    for who, c in result["contenders"].items():
        if "skipped" in c:
            table[who] = f"skipped: {c['skipped']}"
            continue
        table[who] = {name: {"ms_per_caption": round(r["ms_per_caption"], 3), "captions_per_s": round(r["captions_per_s"], 1),
                             "x_generate": round(r["speedup_vs_generate_eager"], 2),
                             "agreement": r["agreement_with_generate_eager"]}
                      for name, r in c["workloads"].items()}
    return {"device": result["device"].get("gpu", "CPU"), "ms per caption": table}


if __name__ == "__main__":
    main()
