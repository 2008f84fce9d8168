"""The issue's GPU targets, each PASS / FAIL with its number, from bench_gpu.py's rows.

On a CPU run every target reads "n/a on CPU" (the numbers are still shown); a target whose numbers
are missing says which contender did not give them and why.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

W1_MS = 6.0                 # W1 ms per caption, at most
W1_SPEEDUP = 25.0           # W1 speed-up over generate() eager fp16 in the same run, at least
W2_PER_S = 3000.0           # W2 (batch 32) captions/s, at least
FRAME_SLACK_MS = 1.0        # caption() of a 1280x720 frame: within W1 + this
AGREEMENT = 0.90            # fp16 tokens equal to generate() fp16's, over the W1 and W2 images


def evaluate(rows: dict[str, dict], spec: dict, *, ours: str, baseline: str) -> list[dict[str, Any]]:
    """One entry per target: name, want, value, result ("PASS", "FAIL", "reported", "n/a on CPU" or
    "not measured: <why>")."""
    on_gpu = spec["device"] == "cuda"
    mine, base = rows.get(ours, {}), rows.get(baseline, {})
    w1, w2 = spec["workloads"][0]["name"], spec["workloads"][-1]["name"]
    found: list[dict[str, Any]] = []

    def add(name: str, want: str, value: Any, passed: bool | None, missing: str | None = None, unit: str = "") -> None:
        entry = {"target": name, "want": want, "value": value, "unit": unit}
        if missing:
            entry["result"] = f"not measured: {missing}"
        elif not on_gpu:
            entry["result"] = "n/a on CPU"
        else:
            entry["result"] = "reported" if passed is None else "PASS" if passed else "FAIL"
        found.append(entry)

    w1_ms = _get(mine, "workloads", w1, "ms_per_caption")
    add("W1 ms per caption", f"<= {W1_MS:g}", w1_ms, w1_ms is not None and w1_ms <= W1_MS, _why(mine, ours, w1_ms), "ms")
    speedup = _get(mine, "workloads", w1, "speedup_vs_generate_eager")
    add("W1 speed-up over generate() eager", f">= {W1_SPEEDUP:g}x", speedup,
        speedup is not None and speedup >= W1_SPEEDUP, _why(mine, ours, w1_ms) or _why(base, baseline, speedup), "x")
    if len(spec["workloads"]) > 1:
        per_s = _get(mine, "workloads", w2, "captions_per_s")
        add(f"{w2} captions/s", f">= {W2_PER_S:,.0f}", per_s, per_s is not None and per_s >= W2_PER_S,
            _why(mine, ours, per_s), "captions/s")
    frame_ms = _get(mine, "caption_frame", "median_ms")
    limit = None if w1_ms is None else w1_ms + FRAME_SLACK_MS
    add("caption() of a 1280x720 BGR frame, ms", f"<= W1 + {FRAME_SLACK_MS:g} = {limit:.3f}" if limit else "<= W1 + 1",
        frame_ms, frame_ms is not None and limit is not None and frame_ms <= limit, _why(mine, ours, frame_ms), "ms")
    agree = [(r.get("agreeing_captions"), r["batch"]) for w in spec["workloads"] if w["agreement"]
             if (r := _get(mine, "workloads", w["name"])) and r.get("agreeing_captions") is not None]
    same, total = sum(a for a, _ in agree), sum(b for _, b in agree)
    add("tokens equal to generate()'s", f">= {AGREEMENT:.0%} of " + " + ".join(w["name"] for w in spec["workloads"] if w["agreement"]), f"{same}/{total}" if total else None,
        total > 0 and same / total >= AGREEMENT, None if total else (_why(mine, ours, None) or _why(base, baseline, None)))
    prof = mine.get("profile") or {}
    add("CUDA kernels per decoding step", "reported", prof.get("cuda_kernels_per_step"), None,
        None if prof else _why(mine, ours, None) or "no profile")
    add("host reads per caption", "reported", prof.get("host_reads_per_caption"), None,
        None if prof else _why(mine, ours, None) or "no profile")
    debug = mine.get("sync_debug") or {}
    entry_missing = None if debug else (_why(mine, ours, None) or "not run")
    add('one W1 caption under set_sync_debug_mode("error")', "no error", debug.get("error", "no error") if debug else None,
        debug.get("result") == "PASS", entry_missing)
    return found


def _get(row: dict, *keys: str) -> Any:
    for key in keys:
        if not isinstance(row, dict) or key not in row:
            return None
        row = row[key]
    return row


def _why(row: dict, name: str, value: Any) -> str | None:
    if value is not None:
        return None
    if not row:
        return f"{name} did not run"
    return f"{name} {row.get('status', 'failed')}" + (f" ({row['reason']})" if row.get("reason") else "")


def table(targets: list[dict[str, Any]]) -> str:
    """The targets as aligned text: result, target, value and unit, what is wanted (and why not measured)."""
    lines = []
    for t in targets:
        value = t["value"]
        shown = f"{value:,.3f}" if isinstance(value, float) else "-" if value is None else str(value)
        result, _, why = t["result"].partition(": ")
        note = f"  [{why}]" if why else ""
        lines.append(f"{result.upper() if result.startswith('not') else result:<13} {t['target']:<50} "
                     f"{shown[:60]:>10} {t['unit']:<10} want {t['want']}{note}")
    return "\n".join(lines)


def report(result_file: Path, phases_file: Path | None = None) -> str:
    """gpu_check.sh's last words: every target, then every phase's time and outcome (also saved
    into the JSON as `gpu_check_phases`)."""
    lines = []
    result = None
    try:
        result = json.loads(Path(result_file).read_text())
        facts = result.get("device", {})
        lines.append(f"== targets ({result.get('mode')} run: {facts.get('gpu', 'CPU')}, torch {facts.get('torch')}, "
                     f"CUDA {facts.get('cuda')}, driver {facts.get('driver')})")
        lines.append(table(result["targets"]))
        for who, row in result.get("contenders", {}).items():
            if row.get("status") != "ok":
                lines.append(f"   {who}: {row.get('status')} ({row.get('reason')})")
    except (OSError, ValueError, KeyError) as exc:
        lines.append(f"== targets: no result ({type(exc).__name__}: {exc}); see bench.log")
    if phases_file is not None and Path(phases_file).is_file():
        lines.append("== phases")
        phases = []
        for line in Path(phases_file).read_text().splitlines():
            name, seconds, outcome = (line.split("\t") + ["", ""])[:3]
            phases.append({"phase": name, "seconds": float(seconds or 0), "outcome": outcome})
            lines.append(f"{name:<10} {float(seconds or 0):7.1f} s  {outcome}")
        if result is not None:                   # gpu_check.sh's phases join the JSON they led to
            result["gpu_check_phases"] = phases
            Path(result_file).write_text(json.dumps(result, indent=2) + "\n")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else None))
