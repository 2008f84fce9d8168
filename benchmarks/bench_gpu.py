"""Ours on one NVIDIA GPU next to what users would otherwise run there, each contender in its own process.

W1: a ViT-B/16 + GPT-2-small sized VisionEncoderDecoder (random weights), batch 1, beam 3, exactly 16
new tokens, fp16, from preprocessed pixel values to token ids. W2: batch 32 (and 8 without --quick).
Contenders (gpu_contenders.py), each run by isolate.py in a child process with a time limit, so a crash
(the static-cache + torch.compile peer segfaulted on torch 2.11 / transformers 5.17) or a hang becomes
that row's reason and the JSON is written whatever happens:
- `transformers` `generate()`, eager;
- `generate()` with a static cache and `torch.compile` (mode "reduce-overhead");
- ours, `EdgeCaptioner(bundle, backend="onnxruntime")` on the CUDA EP (skipped without onnxruntime-gpu);
- ours, `EdgeCaptioner(bundle, backend="torch-cuda")`: also caption() of a 1280x720 BGR frame, kernels
  per step and host reads per caption (torch.profiler), one caption under sync debug mode "error".
Then the issue's targets, each PASS / FAIL with its number (targets.py).

    python benchmarks/bench_gpu.py [--quick] [--out FILE] [--work DIR] [--budget-s 240]
    python benchmarks/bench_gpu.py --export-only --work DIR     # only export W1's bundle (time it)
    python benchmarks/bench_gpu.py --smoke       # a tiny model, fp32, on whatever device is here (CI)
    python benchmarks/bench_gpu.py --cpu         # the same on the CPU (gpu_check.sh --cpu)
    python benchmarks/bench_gpu.py --cpu --contenders FILE.py   # FILE's CONTENDERS instead (tests)

`--json` writes benchmarks/results/gpu.json (and gpu.png) on a GPU; `--out FILE` writes the JSON there.
It names the GPU, driver, CUDA and torch.
"""
from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import isolate  # noqa: E402
from isolate import Contender  # noqa: E402
from targets import evaluate, table  # noqa: E402
from timing import RESULTS, chart, machine, write  # noqa: E402

NEW_TOKENS = 16
W1 = {"name": "W1 b1 beam3", "batch": 1, "num_beams": 3, "start": 0, "agreement": True}
W2_8 = {"name": "W2 b8 beam3", "batch": 8, "num_beams": 3, "start": 1, "agreement": False}
W2_32 = {"name": "W2 b32 beam3", "batch": 32, "num_beams": 3, "start": 1, "agreement": True}
FRAME = (720, 1280, 3)
OURS = "ours, torch-cuda"
BASELINE = "generate() eager"
CONTENDERS = [       # the baseline (short), then ours: the budget may run out, and these two decide the targets
    Contender(BASELINE, "gpu_contenders:generate_eager", 90),
    Contender("ours, torch-cuda, uncompiled", "gpu_contenders:ours_torch_uncompiled", 90),
    Contender(OURS, "gpu_contenders:ours_torch", 240),
    Contender("ours, ONNX Runtime", "gpu_contenders:ours_onnxruntime", 120),
    Contender("generate() static cache + torch.compile", "gpu_contenders:generate_compiled", 150),
]


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # an outer `timeout` still gets a JSON
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="write benchmarks/results/gpu.json and gpu.png (GPU runs)")
    parser.add_argument("--out", type=Path, help="write the JSON here (any run)")
    parser.add_argument("--work", type=Path, help="keep the exported bundle and the images here between runs")
    parser.add_argument("--quick", action="store_true", help="fewer repeats, W1 and W2 b32 only (gpu_check.sh)")
    parser.add_argument("--w1-only", action="store_true", help="W1 alone (comparing variants of ours)")
    parser.add_argument("--repeats", type=int, help="timed runs per workload (default 20, --quick 10, tiny 3)")
    parser.add_argument("--budget-s", type=float, default=1800, help="stop starting contenders after this long")
    parser.add_argument("--smoke", action="store_true", help="tiny model, fp32, few repeats, any device")
    parser.add_argument("--cpu", action="store_true", help="--smoke on the CPU even where a GPU is")
    parser.add_argument("--export-only", action="store_true", help="export the bundle into --work and stop")
    parser.add_argument("--no-export", action="store_true", help="use the bundle in --work if there; never export")
    parser.add_argument("--contenders", type=Path, metavar="FILE.py",
                        help="run the CONTENDERS list of this file instead of the usual ones (the tests inject doubles)")
    args = parser.parse_args()
    deadline = time.monotonic() + args.budget_s
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    tiny = args.smoke or args.cpu
    device = "cpu" if args.cpu else ("cuda" if _cuda() else "cpu")
    if device == "cpu" and not tiny:
        sys.exit("bench_gpu.py needs a CUDA GPU (torch.cuda.is_available() is False); --smoke or --cpu run it anywhere")
    spec = {"model": "tiny_vit_gpt2" if tiny else "vit_gpt2_base", "device": device,
            "dtype": "float32" if tiny else "float16", "new_tokens": NEW_TOKENS,
            "workloads": [W1] if tiny or args.w1_only else [W1, W2_32] if args.quick else [W1, W2_8, W2_32],
            "warmup": 1 if tiny else 2, "repeats": args.repeats or (3 if tiny else 10 if args.quick else 20)}
    bundle = work / f"{spec['model']}.ecap"
    exported = ({"status": "skipped", "reason": "--no-export"} if args.no_export
                else prepare_bundle(bundle, spec, work, deadline))
    if args.export_only:
        print(json.dumps(exported))
        sys.exit(0 if (bundle / "manifest.json").is_file() else 1)
    contenders = isolate.load(f"{args.contenders}:CONTENDERS") if args.contenders else CONTENDERS
    result = bench(spec, bundle, work, deadline, contenders)
    result["export"] = exported
    result["mode"] = "cpu" if device == "cpu" else "gpu"
    result["quick"] = args.quick
    print(json.dumps(summary(result), indent=2))
    print(table(result["targets"]), file=sys.stderr)
    save(result, args, gpu=device == "cuda" and not tiny)


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def prepare_bundle(bundle: Path, spec: dict, work: Path, deadline: float) -> dict:
    """Export the bundle in a child process (timed, and survivable) unless it is already there."""
    if (bundle / "manifest.json").is_file():
        return {"status": "ok", "reason": "already exported", "wall_s": 0.0}
    task = Contender("export", "bench_export:export_bundle", 400)
    return isolate.run(task, {**spec, "bundle": str(bundle)}, work / "rows", deadline=deadline)


def bench(spec: dict, bundle: Path, work: Path, deadline: float, contenders: list[Contender]) -> dict:
    """Run every contender (each isolated), compare tokens with generate()'s, evaluate the targets.
    Always returns a result, whatever the contenders did."""
    work.mkdir(parents=True, exist_ok=True)
    size = 32 if spec["model"].startswith("tiny") else 224
    images = work / f"images-{size}.npy"
    count = max(w["start"] + w["batch"] for w in spec["workloads"])
    np.save(images, np.random.default_rng(0).standard_normal((max(count, 33), 3, size, size)).astype(np.float32))
    frame = work / "frame-1280x720.npy"
    np.save(frame, np.random.default_rng(1).integers(0, 256, FRAME, dtype=np.uint8))
    spec = {**spec, "bundle": str(bundle), "images": str(images), "frame": str(frame)}
    rows: dict[str, dict] = {}
    for c in contenders:
        try:
            rows[c.name] = isolate.run(c, spec, work / "rows", deadline=deadline)
        except (KeyboardInterrupt, SystemExit) as exc:      # SIGTERM from an outer time limit: keep what ran
            rows[c.name] = {"status": "failed", "reason": f"interrupted ({type(exc).__name__})"}
            break
    compare(rows, spec["workloads"])
    return {"title": f"{'tiny (smoke)' if spec['model'].startswith('tiny') else 'W1/W2: ViT-B/16 + GPT-2 small'}, "
                     f"{NEW_TOKENS} new tokens, {spec['dtype']}, {_device_name(spec['device'])}",
            "device": facts(), "dtype": spec["dtype"], "new_tokens": NEW_TOKENS, "workloads": spec["workloads"],
            "contenders": rows, "targets": evaluate(rows, spec, ours=OURS, baseline=BASELINE)}


def compare(rows: dict[str, dict], workloads: list[dict]) -> None:
    """Speed-up over, and token agreement with, generate() eager, where both ran the workload."""
    base = rows.get(BASELINE, {}).get("workloads", {})
    for row in rows.values():
        for name, w in row.get("workloads", {}).items():
            if name in base:
                w["speedup_vs_generate_eager"] = base[name]["ms_per_caption"] / w["ms_per_caption"]
                theirs = base[name]["tokens"]
                w["agreeing_captions"] = sum(a == b for a, b in zip(w["tokens"], theirs))
                w["agreement_with_generate_eager"] = w["agreeing_captions"] / len(theirs)


def _device_name(device: str) -> str:
    if device != "cuda":
        return "CPU"
    import torch

    return torch.cuda.get_device_name()


def facts() -> dict:
    """The GPU, driver, CUDA and torch, and the machine (timing.machine)."""
    found = machine()
    try:
        import torch

        found.update(torch=torch.__version__, cuda=torch.version.cuda)
        if torch.cuda.is_available():
            found["gpu"] = torch.cuda.get_device_name()
            found["compute_capability"] = ".".join(map(str, torch.cuda.get_device_capability()))
    except ImportError:
        pass
    try:
        found["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                         capture_output=True, text=True, timeout=20).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        found["driver"] = None
    return found


def summary(result: dict) -> dict:
    """ms per caption, captions/s, speed-up and agreement per contender and workload (stdout)."""
    out = {}
    for who, c in result["contenders"].items():
        rows = {name: {"ms_per_caption": round(r["ms_per_caption"], 3), "captions_per_s": round(r["captions_per_s"], 1),
                       "x_generate": round(r.get("speedup_vs_generate_eager", float("nan")), 2),
                       "agreement": r.get("agreement_with_generate_eager")}
                for name, r in c.get("workloads", {}).items()}
        if c["status"] != "ok":
            rows["status"] = f"{c['status']}: {c.get('reason')}"
        out[who] = rows
    return {"device": result["device"].get("gpu", "CPU"), "ms per caption": out}


def save(result: dict, args, *, gpu: bool) -> None:
    """The JSON to --out, and with --json on a GPU to results/gpu.json and gpu.png."""
    payload = {"machine": machine(), **result}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    if args.json and gpu:
        print(f"wrote {write('gpu', result)}", file=sys.stderr)
    groups: dict[str, dict[str, float]] = {}
    for who, c in result["contenders"].items():
        for name, row in c.get("workloads", {}).items():
            groups.setdefault(name, {})[who] = row["ms_per_caption"]
    targets = ([RESULTS / "gpu.png"] if args.json and gpu else []) + ([args.out.with_suffix(".png")] if args.out else [])
    for path in targets:
        try:
            print(f"wrote {chart('gpu', groups, log=True, title=result['title'], path=path, ylabel='ms per caption (lower is better)')}",
                  file=sys.stderr)
        except Exception as exc:                  # noqa: BLE001 - no chart (no matplotlib) must not cost the JSON
            print(f"no chart: {type(exc).__name__}: {exc}", file=sys.stderr)


if __name__ == "__main__":
    main()
