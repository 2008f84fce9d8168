"""Run one benchmark contender in its own process, so that a crash or a hang costs its row, not the run.

A contender is a function `fn(spec, record)` named by "module:function" (a module in benchmarks/, or a
path to a .py file, then ":function"). It runs in a child process (`python isolate.py TARGET SPEC OUT`)
and saves what it has measured with `record.save(key, value)`, which rewrites the child's JSON each time,
so rows finished before a crash survive it. `raise Skip("why")` records a skip. The parent turns a
signal, a non-zero exit or a time-out into the row's `reason` ("killed by SIGSEGV", "timed out after
120 s", "exited with code 1: RuntimeError: ...").
"""
from __future__ import annotations

import faulthandler
import importlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent


class Skip(Exception):
    """Raised by a contender that cannot run here (the message says why); recorded as skipped."""


@dataclass(frozen=True)
class Contender:
    """One row of a benchmark: its name, the function that measures it, and how long it may take."""

    name: str
    target: str                 # "module:function" or "/path/to/file.py:function"
    timeout_s: float = 300.0


class Record:
    """What a contender has measured so far, written to `path` (JSON) on every save."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.data: dict[str, Any] = {}

    def save(self, key: str, value: Any) -> None:
        self.data[key] = value
        temporary = self.path.with_suffix(".partial")
        temporary.write_text(json.dumps(self.data, indent=1, default=str))
        os.replace(temporary, self.path)          # a crash mid-write leaves the previous save readable


def run(contender: Contender, spec: dict[str, Any], workdir: Path, *, deadline: float | None = None,
        minimum_s: float = 5.0) -> dict[str, Any]:
    """Run `contender` in a child process; return its row with `status` ("ok", "skipped", "failed"),
    `wall_s`, and `reason` when it did not finish. `deadline` (time.monotonic()) caps its time limit,
    so a run never outlives its budget; under `minimum_s` left, it is not started."""
    timeout = contender.timeout_s
    if deadline is not None:
        timeout = min(timeout, deadline - time.monotonic())
    if timeout < min(minimum_s, contender.timeout_s):
        return {"status": "skipped", "reason": "not run: the benchmark's time budget was spent", "wall_s": 0.0}
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", contender.name).strip("-").lower()
    out, spec_file = workdir / f"{slug}.json", workdir / f"{slug}.spec.json"
    out.unlink(missing_ok=True)
    spec_file.write_text(json.dumps(spec))
    print(f"--- {contender.name}: {contender.target}, time limit {timeout:.0f} s", file=sys.stderr, flush=True)
    started = time.monotonic()
    # stdout goes to our stderr: a contender's prints must not mix with the JSON a caller reads from
    # our stdout. Its own session, so a time-out also ends what it started (compile workers).
    child = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), contender.target, str(spec_file), str(out)],
                             stdout=sys.stderr, start_new_session=True)
    reason = None
    try:
        code = child.wait(timeout)
        if code < 0:
            reason = f"killed by {_signal_name(-code)}"
        elif code > 0:
            reason = f"exited with code {code}"
    except subprocess.TimeoutExpired:
        reason = f"timed out after {timeout:.0f} s"
        _end(child)
    except BaseException:                          # interrupted ourselves: the child must not outlive us
        _end(child)
        raise
    row = _read(out)
    row["wall_s"] = round(time.monotonic() - started, 2)
    if reason is not None:
        row["status"] = "failed"
        row["reason"] = reason + (f": {row.pop('error')}" if row.get("error") else "")
    elif "skipped" in row:
        row["status"] = "skipped"
        row["reason"] = row.pop("skipped")
    else:
        row["status"] = "ok"
    print(f"--- {contender.name}: {row['status']}" + (f" ({row['reason']})" if "reason" in row else "")
          + f" in {row['wall_s']:.1f} s", file=sys.stderr, flush=True)
    return row


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _end(child: subprocess.Popen) -> None:
    """SIGABRT first (faulthandler prints where it hung), then SIGKILL to its whole session."""
    try:
        child.send_signal(signal.SIGABRT)
        child.wait(5)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        pass
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    child.wait()


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def load(target: str) -> Callable[[dict, Record], None]:
    """The function `target` names: "module:function" (benchmarks/ is on the path) or "file.py:function"."""
    module_name, _, function = target.rpartition(":")
    if module_name.endswith(".py"):
        spec = importlib.util.spec_from_file_location(Path(module_name).stem, module_name)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    return getattr(module, function)


def _child(target: str, spec_file: str, out: str) -> int:
    faulthandler.enable()                          # a segfault prints the Python stack to the log
    for path in (str(HERE), str(HERE.parent)):
        if path not in sys.path:
            sys.path.insert(0, path)
    record = Record(Path(out))
    try:
        load(target)(json.loads(Path(spec_file).read_text()), record)
    except Skip as exc:
        record.save("skipped", str(exc))
    except BaseException as exc:                  # noqa: BLE001 - any failure becomes the row's reason
        traceback.print_exc()
        first = (str(exc).strip().splitlines() or [""])[0][:400]
        record.save("error", f"{type(exc).__name__}: {first}".rstrip(": "))
        return 1
    return 0


if __name__ == "__main__":
    # through the module, not __main__: contenders raise isolate.Skip, which must be the class caught
    sys.path.insert(0, str(HERE))
    import isolate

    sys.exit(isolate._child(*sys.argv[1:4]))
