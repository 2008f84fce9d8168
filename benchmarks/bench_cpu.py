"""Ours on a CPU next to what users would otherwise run, all in one run, same inputs, same machine.

W3: a ViT-B/16 + GPT-2-small sized VisionEncoderDecoder (random weights), batch 1 and 8, greedy and
beam 3, exactly 16 new tokens: `transformers` `generate()` (fp32, eager), Optimum's ONNX Runtime
model (in its own environment, `--optimum-python`), ours fp32 and ours int8 (ONNX Runtime). A column
says whether each contender's tokens are `generate()`'s. Then where ours spends a beam-3 caption.

Demo: the shipped default model, ours fp32 and int8 on the same workloads, and what int8 keeps of
the captions on the scene test split (CIDEr, BLEU-4, exact match, agreement with fp32).

    python benchmarks/bench_cpu.py [--json] [--work DIR] [--repeats 3] [--optimum-python PY]

`--work DIR` keeps the exported W3 bundles (and the model Optimum reads) between runs.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from timing import bundle_size_mb, chart, measure, median, write  # noqa: E402

NEW_TOKENS = 16
WORKLOADS = [{"name": f"b{batch} {'greedy' if beams == 1 else f'beam{beams}'}", "batch": batch, "num_beams": beams,
              "new_tokens": NEW_TOKENS} for batch in (1, 8) for beams in (1, 3)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="write benchmarks/results/cpu.json and cpu.png")
    parser.add_argument("--work", type=Path, help="keep the exported W3 model and bundles here")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--optimum-python", help="the python of an environment with optimum[onnxruntime]")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-cpu-"))
    w3 = bench_w3(work, args.repeats, args.optimum_python)
    demo = bench_demo(work, args.repeats)
    result = {"new_tokens": NEW_TOKENS, "w3": w3, "demo": demo}
    print(json.dumps(_summary(result), indent=2))
    if args.json:
        print(f"wrote {write('cpu', result)}")
        groups = {f"W3 {w['name']}": {who: c["workloads"][w["name"]]["ms_per_caption"]
                                      for who, c in w3["contenders"].items() if w["name"] in c.get("workloads", {})}
                  for w in WORKLOADS}
        print(f"wrote {chart('cpu', groups, ylabel='ms per caption (lower is better)', log=True, title=_title())}")


def bench_w3(work: Path, repeats: int, optimum_python: str | None) -> dict:
    import torch

    from edge_caption import EdgeCaptioner
    from edge_caption.export import export
    from edge_caption.export.testing import tiny_tokenizer, vit_gpt2_base

    model = vit_gpt2_base()
    hf_dir, fp32, int8 = work / "w3-hf", work / "w3-fp32.ecap", work / "w3-int8.ecap"
    if not (hf_dir / "config.json").is_file():
        model.save_pretrained(hf_dir)
    if not (fp32 / "manifest.json").is_file():
        export(model, fp32, tokenizer=tiny_tokenizer(vocab_size=50257), name="vit-gpt2-base-random", overwrite=True)
    if not (int8 / "manifest.json").is_file():
        export(fp32, int8, precision="int8", overwrite=True)
    pixels = np.random.default_rng(0).standard_normal((8, 3, 224, 224)).astype(np.float32)

    contenders: dict[str, dict] = {}
    reference: dict[str, list] = {}

    def hf(work_item):
        px = torch.from_numpy(pixels[: work_item["batch"]])

        def run():
            with torch.inference_mode():
                return model.generate(pixel_values=px, **_hf_options(work_item))
        return run

    contenders["generate() eager"] = {"workloads": {}}
    for w in WORKLOADS:
        run = hf(w)
        timing = measure(run, warmup=1, repeats=repeats)
        reference[w["name"]] = run()[:, 1:].tolist()
        contenders["generate() eager"]["workloads"][w["name"]] = _row(timing, w, True)
        _say("generate()", w, timing)

    if optimum_python:
        contenders["Optimum ORT"] = _optimum(optimum_python, hf_dir, pixels, repeats, reference)
    else:
        contenders["Optimum ORT"] = {"skipped": "pass --optimum-python (an environment with optimum[onnxruntime])"}

    breakdown = None
    for label, bundle in (("ours fp32", fp32), ("ours int8", int8)):
        captioner = EdgeCaptioner(bundle, backend="onnxruntime")
        contenders[label] = {"workloads": {}, "bundle_mb": bundle_size_mb(bundle)}
        for w in WORKLOADS:
            px = pixels[: w["batch"]]
            run = lambda: captioner.caption_pixels(px, **_our_options(w))  # noqa: E731
            timing = measure(run, warmup=1, repeats=repeats)
            ids = [list(c.token_ids) for c in run()]
            contenders[label]["workloads"][w["name"]] = _row(timing, w, ids == reference[w["name"]],
                                                             _agreement(ids, reference[w["name"]]))
            _say(label, w, timing)
        if label == "ours fp32":
            breakdown = _breakdown(captioner, bundle, pixels[:1])
        captioner.close()
    for label in contenders:
        for name, row in contenders[label].get("workloads", {}).items():
            row["speedup_vs_generate"] = (contenders["generate() eager"]["workloads"][name]["ms_per_caption"]
                                          / row["ms_per_caption"])
    return {"workload": "ViT-B/16 + GPT-2 small (random weights), fp32 unless named, CPU, exactly 16 new tokens",
            "contenders": contenders, "ours_fp32_b1_beam3_breakdown": breakdown}


def bench_demo(work: Path, repeats: int) -> dict:
    from edge_caption import EdgeCaptioner, evaluation
    from edge_caption.captioner import default_bundle_path
    from edge_caption.export import export

    fp32 = default_bundle_path()
    int8 = work / "default-int8.ecap"
    if not (int8 / "manifest.json").is_file():
        export(fp32, int8, precision="int8", overwrite=True)
    frames = [np.asarray(image) for _, image, _ in evaluation.load("test", limit=8)]
    out: dict = {"workload": "the shipped default model (show-attend-tell, 96x96 scenes), CPU", "contenders": {}}
    predictions = {}
    for label, bundle in (("ours fp32", fp32), ("ours int8", int8)):
        captioner = EdgeCaptioner(bundle, backend="onnxruntime")
        rows = {}
        for w in WORKLOADS:
            chunk = frames[: w["batch"]]
            timing = measure(lambda: captioner.caption_batch(chunk, **_our_options(w)), warmup=1, repeats=repeats)
            rows[w["name"]] = _row(timing, w, None)
            _say(f"demo {label}", w, timing)
        quality = {}
        for beams in (1, 3):
            scored = evaluation.evaluate(captioner, "test", num_beams=beams, progress=False, meteor=False)
            texts = [p["caption"] for p in scored["predictions"]]
            predictions[(label, beams)] = texts
            quality[f"num_beams={beams}"] = {k: scored["metrics"][k] for k in ("CIDEr", "BLEU-4", "exact")}
        out["contenders"][label] = {"workloads": rows, "bundle_mb": bundle_size_mb(bundle), "test_split": quality}
        captioner.close()
    for beams in (1, 3):
        same = _agreement(predictions[("ours int8", beams)], predictions[("ours fp32", beams)])
        keep = out["contenders"]["ours int8"]["test_split"][f"num_beams={beams}"]
        keep["agreement_with_fp32"] = same
        keep["cider_kept"] = keep["CIDEr"] / out["contenders"]["ours fp32"]["test_split"][f"num_beams={beams}"]["CIDEr"]
    return out


def _breakdown(captioner, bundle: Path, pixels: np.ndarray) -> dict:
    """Where one beam-3 caption's time goes, and the floor the decoder step's weight bytes set."""
    backend = captioner._backend
    spent = {"step": 0.0, "steps": 0}
    original = backend.step

    def timed(*args):
        start = time.perf_counter()
        try:
            return original(*args)
        finally:
            spent["step"] += time.perf_counter() - start
            spent["steps"] += 1

    backend.step = timed
    try:
        runs = [captioner.caption_pixels(pixels, **_our_options(WORKLOADS[1]))[0] for _ in range(3)]
    finally:
        backend.step = original
    step_ms = spent["step"] * 1e3 / spent["steps"]
    encode = median(c.timings["encode"] for c in runs)
    decode = median(c.timings["decode"] for c in runs)
    step_bytes = (bundle / captioner.manifest.decoder_step.file).stat().st_size
    bandwidth = _read_bandwidth()
    return {"encode_ms": encode, "decode_ms": decode, "step_ms": step_ms,
            "host_ms_per_step": decode / (spent["steps"] / 3) - step_ms,
            "step_graph_mb": step_bytes / 1e6, "memory_read_gb_s": bandwidth / 1e9,
            "step_floor_ms": step_bytes / bandwidth * 1e3}


def _read_bandwidth() -> float:
    """Bytes per second one pass of reads over 512 MB achieves here: what streaming weights costs."""
    data = np.ones(128 * 1024 * 1024, dtype=np.float32)
    data.sum()
    start = time.perf_counter()
    for _ in range(3):
        data.sum()
    return 3 * data.nbytes / (time.perf_counter() - start)


def _optimum(python: str, hf_dir: Path, pixels: np.ndarray, repeats: int, reference: dict) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        np.save(Path(scratch) / "px.npy", pixels)
        done = subprocess.run([python, str(ROOT / "benchmarks" / "optimum_peer.py"), str(hf_dir),
                               str(Path(scratch) / "px.npy"), json.dumps(WORKLOADS), "--repeats", str(repeats)],
                              capture_output=True, text=True)
    if done.returncode != 0:
        return {"skipped": f"Optimum failed: {done.stderr.strip().splitlines()[-1:]}"}
    found = json.loads(done.stdout.strip().splitlines()[-1])
    rows = {}
    for w in WORKLOADS:
        got = found["results"][w["name"]]
        rows[w["name"]] = _row(got["total"], w, got["token_ids"] == reference[w["name"]],
                               _agreement(got["token_ids"], reference[w["name"]]))
        _say("Optimum", w, got["total"])
    return {"workloads": rows, "export_s": found["export_s"], "versions": found["versions"]}


def _hf_options(w: dict) -> dict:
    return dict(do_sample=False, num_beams=w["num_beams"], max_new_tokens=w["new_tokens"], min_new_tokens=w["new_tokens"])


def _our_options(w: dict) -> dict:
    return dict(num_beams=w["num_beams"], max_new_tokens=w["new_tokens"], min_new_tokens=w["new_tokens"])


def _row(timing: dict, w: dict, identical: bool | None, agreement: float | None = None) -> dict:
    row = {**timing, "ms_per_caption": timing["median_ms"] / w["batch"], "captions_per_s": 1e3 * w["batch"] / timing["median_ms"]}
    if identical is not None:
        row["identical_to_generate"] = identical
    if agreement is not None:
        row["agreement_with_generate"] = agreement
    return row


def _agreement(ours: list, theirs: list) -> float:
    return sum(a == b for a, b in zip(ours, theirs)) / len(theirs)


def _say(label: str, w: dict, timing: dict) -> None:
    print(f"{label:>18} {w['name']:<10} {timing['median_ms'] / w['batch']:8.1f} ms per caption", file=sys.stderr, flush=True)


def _summary(result: dict) -> dict:
    table = {}
    for part in ("w3", "demo"):
        for who, c in result[part]["contenders"].items():
            for name, row in c.get("workloads", {}).items():
                table.setdefault(f"{part} {name}", {})[who] = round(row["ms_per_caption"], 1)
    return {"ms_per_caption": table, "w3 breakdown": result["w3"]["ours_fp32_b1_beam3_breakdown"],
            "demo test split": {k: v.get("test_split") for k, v in result["demo"]["contenders"].items()}}


def _title() -> str:
    import platform
    return f"W3 (ViT-B/16 + GPT-2 small), {NEW_TOKENS} new tokens, {len(os.sched_getaffinity(0))}-core CPU ({platform.machine()})"


if __name__ == "__main__":
    main()
