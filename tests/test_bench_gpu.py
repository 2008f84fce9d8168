"""benchmarks/bench_gpu.py survives its contenders, and gpu_check.sh runs end to end (--cpu).

The contenders below are injected with `bench_gpu.py --contenders tests/test_bench_gpu.py`: each runs
in its own process (isolate.py), so one that segfaults, one that hangs and one that raises each cost
their own row, and the JSON is written though none of them measured anything.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))

from isolate import Contender  # noqa: E402

HANG_S = 3


def segfaults(spec: dict, record) -> None:
    record.save("workloads", {})                    # saved before the crash: must survive it
    os.kill(os.getpid(), signal.SIGSEGV)


def hangs(spec: dict, record) -> None:
    time.sleep(600)


def raises(spec: dict, record) -> None:
    raise RuntimeError("the decoder has no GPU to run on")


def skips(spec: dict, record) -> None:
    from isolate import Skip

    raise Skip("needs onnxruntime-gpu")


CONTENDERS = [Contender("ours, torch-cuda", f"{__file__}:segfaults", 60),
              Contender("generate() eager", f"{__file__}:hangs", HANG_S),
              Contender("raises", f"{__file__}:raises", 60),
              Contender("skips", f"{__file__}:skips", 60)]


def test_a_crash_a_hang_and_an_error_become_reasons_and_the_json_is_written(tmp_path):
    out = tmp_path / "out" / "gpu.json"
    started = time.monotonic()
    run = subprocess.run([sys.executable, str(BENCH / "bench_gpu.py"), "--cpu", "--no-export", "--work", str(tmp_path),
                          "--contenders", __file__, "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert time.monotonic() - started < 60, "the hung contender was not stopped at its time limit"
    rows = json.loads(out.read_text())["contenders"]
    assert rows["ours, torch-cuda"]["status"] == "failed"
    assert rows["ours, torch-cuda"]["reason"] == "killed by SIGSEGV"
    assert rows["ours, torch-cuda"]["workloads"] == {}
    assert rows["generate() eager"]["reason"] == f"timed out after {HANG_S} s"
    assert rows["raises"]["reason"] == "exited with code 1: RuntimeError: the decoder has no GPU to run on"
    assert rows["skips"] == {**rows["skips"], "status": "skipped", "reason": "needs onnxruntime-gpu"}
    targets = {t["target"]: t["result"] for t in json.loads(out.read_text())["targets"]}
    assert targets["W1 ms per caption"] == "not measured: ours, torch-cuda failed (killed by SIGSEGV)"
    left = [line for line in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout.splitlines()
            if "hangs" in line and str(tmp_path) in line]      # this run's children only: others may share the box
    assert not left, left


def test_a_contender_never_outlives_the_budget(tmp_path):
    import isolate

    row = isolate.run(Contender("late", f"{__file__}:hangs", 600), {}, tmp_path, deadline=time.monotonic() + 1)
    assert row["status"] == "skipped" and "time budget" in row["reason"]
    started = time.monotonic()
    row = isolate.run(Contender("hang", f"{__file__}:hangs", 600), {}, tmp_path, deadline=time.monotonic() + 8)
    assert row["reason"].startswith("timed out after") and time.monotonic() - started < 20


def test_one_percentile_and_timing_loop():
    from timing import bundle_size_mb, measure, percentile, summarize

    assert percentile([], 0.5) is None
    assert percentile([5, 1, 4, 2, 3], 0.5) == 3 and percentile(range(101), 0.99) == 99
    stats = summarize([3.0, 1.0, 2.0])
    assert (stats["median_ms"], stats["min_ms"], stats["p99_ms"], stats["repeats"]) == (2.0, 1.0, 3.0, 3)
    calls = []
    row = measure(lambda: calls.append(1), warmup=2, repeats=4, sync=lambda: calls.append(0))
    assert row["repeats"] == 4 and calls.count(1) == 6 and calls.count(0) == 8
    assert bundle_size_mb(Path(__file__)) == Path(__file__).stat().st_size / 1e6


@pytest.mark.slow
def test_gpu_check_script_runs_end_to_end_on_the_cpu(tmp_path):
    """gpu_check.sh --cpu: the same script the GPU machine runs, on a tiny model; every contender
    (generate() eager and compiled included) measures W1, and every target reads "n/a on CPU"."""
    pytest.importorskip("torch")
    env = {**os.environ, "OUT": str(tmp_path / "out"), "GPU_CHECK_WORK": str(tmp_path / "work"),
           "PYTHON": sys.executable}
    run = subprocess.run(["bash", str(BENCH / "gpu_check.sh"), "--cpu"], capture_output=True, text=True,
                         timeout=1200, env=env, cwd=ROOT)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    result = json.loads((tmp_path / "out" / "gpu.json").read_text())
    assert result["mode"] == "cpu"
    for name, row in result["contenders"].items():
        assert row["status"] == "ok", f"{name}: {row.get('reason')}"
        assert row["workloads"]["W1 b1 beam3"]["agreement_with_generate_eager"] == 1.0, name
    assert {t["result"] for t in result["targets"]} == {"n/a on CPU"}
    for phase in ("install", "pytest", "export", "bench", "total"):
        assert f"\n{phase} " in run.stdout, phase
    assert "W1 ms per caption" in run.stdout.split("== targets")[-1]
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {"gpu.json", "bench.log", "pytest.log", "export.log"}
