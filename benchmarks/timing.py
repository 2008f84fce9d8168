"""The one timing helper every benchmark uses: the timing loop, percentiles, bundle sizes, the machine and
versions, the JSON and the chart."""
from __future__ import annotations

import importlib.metadata as md
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Iterable

RESULTS = Path(__file__).parent / "results"


def percentile(values: Iterable[float], q: float) -> float | None:
    """The `q` quantile (0..1) of `values` by nearest rank (no interpolation); None when empty.

    The one percentile every benchmark reports (p10 / p50 / p90 / p99), so that one script's p99
    means what another's does."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


def median(values: Iterable[float]) -> float:
    """The median of `values` (the mean of the middle two for an even count); NaN when empty."""
    values = list(values)
    return float(statistics.median(values)) if values else float("nan")


def summarize(samples_ms: Iterable[float]) -> dict[str, Any]:
    """median, p10, p50, p90, p99 and min of samples in milliseconds, with their count."""
    samples = sorted(samples_ms)
    if not samples:
        return {"repeats": 0}
    return {"median_ms": statistics.median(samples), "p10_ms": percentile(samples, 0.1),
            "p50_ms": percentile(samples, 0.5), "p90_ms": percentile(samples, 0.9),
            "p99_ms": percentile(samples, 0.99), "min_ms": samples[0], "repeats": len(samples)}


def measure(fn: Callable[[], Any], *, warmup: int = 2, repeats: int = 10,
            sync: Callable[[], None] | None = None) -> dict[str, Any]:
    """Wall-clock milliseconds of `fn()` over `repeats` runs after `warmup`: see `summarize`.

    `sync` (e.g. torch.cuda.synchronize) runs before the clock starts and before it stops, so work
    a call leaves queued on a GPU is counted in that call, not the next."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        if sync is not None:
            sync()
        start = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        samples.append((time.perf_counter() - start) * 1e3)
    return summarize(samples)


def bundle_size_mb(path: str | Path) -> float:
    """Megabytes (10^6 bytes) of every file under `path` (a bundle directory, or one file)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size / 1e6
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


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
          log: bool = False, path: Path | None = None) -> Path:
    """A grouped bar chart, `results/<name>.png` (or `path`): one group per workload, one bar per contender.

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
    path = Path(path) if path is not None else RESULTS / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
