"""The one timing helper every benchmark uses: warm-up, repeats, median/p10/p90, machine and versions."""
from __future__ import annotations

import importlib.metadata as md
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable

RESULTS = Path(__file__).parent / "results"


def measure(fn: Callable[[], Any], *, warmup: int = 2, repeats: int = 10) -> dict[str, float]:
    """Wall-clock milliseconds of `fn()`: median, p10, p90, min over `repeats` runs after `warmup`."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    samples.sort()
    pick = lambda q: samples[min(len(samples) - 1, int(round(q * (len(samples) - 1))))]  # noqa: E731
    return {"median_ms": statistics.median(samples), "p10_ms": pick(0.1), "p90_ms": pick(0.9),
            "min_ms": samples[0], "repeats": repeats}


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for package in ("edge-caption", "onnxruntime", "torch", "transformers", "numpy", "opencv-python-headless"):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            pass
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "python": platform.python_version(),
            "platform": platform.platform(), "versions": versions,
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def write(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2) + "\n")
    return path


def _short(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def chart(name: str, groups: dict[str, dict[str, float]], *, ylabel: str, title: str,
          log: bool = False) -> Path:
    """A grouped bar chart, `results/<name>.png`: one group per workload, one bar per contender.

    matplotlib is imported here, not at the top, so a benchmark still runs (and writes its JSON)
    without it; `pip install matplotlib` for the chart."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = list(dict.fromkeys(s for bars in groups.values() for s in bars))
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(groups) * max(1, len(series)) ** 0.5), 4.2))
    for i, label in enumerate(series):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        values = [bars.get(label, float("nan")) for bars in groups.values()]
        drawn = ax.bar(xs, values, width, label=label)
        ax.bar_label(drawn, fmt=_short, fontsize=7, padding=1)
    ax.set_xticks(range(len(groups)), list(groups), fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
