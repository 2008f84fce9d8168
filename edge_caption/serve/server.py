"""Run Triton Inference Server (the `tritonserver` inside the nvidia-pytriton wheel) on a bundle.

We start the real server on a standard model repository (see repository.py) rather than binding a
Python function through PyTriton's proxy: Triton's own Python backend can answer each request of a
batch on its own (a bad request fails alone), runs every instance in its own process, and serves
exactly the repository `edge-caption export-triton` writes for NVIDIA's container.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import ServeError, missing_extra
from .repository import write_repository


# On SIGTERM Triton waits this long for clients to hang up (idle keep-alive connections count) and
# for in-flight captions (well under a second each) before it exits; its default is 30 s.
EXIT_TIMEOUT_S = 5


def _triton_dist() -> tuple[Path, Path, Path]:
    """(tritonserver directory, its shared libraries, the Python-backend stub for this Python)."""
    try:
        import pytriton
    except ImportError:
        raise missing_extra("nvidia-pytriton (Triton Inference Server)", "serve") from None
    root = Path(pytriton.__file__).parent
    dist = root / "tritonserver"
    stub = dist / "python_backend_stubs" / f"{sys.version_info.major}.{sys.version_info.minor}" / \
        "triton_python_backend_stub"
    if not (dist / "bin" / "tritonserver").is_file():
        raise ServeError(f"nvidia-pytriton at {root} has no tritonserver binary (Linux x86-64 and aarch64 "
                         "wheels have one); reinstall it with: pip install --force-reinstall nvidia-pytriton")
    if not stub.is_file():
        raise ServeError(f"nvidia-pytriton has no Python-backend stub for Python "
                         f"{sys.version_info.major}.{sys.version_info.minor}; use Python 3.8 to 3.13")
    return dist, root.parent / "nvidia_pytriton.libs", stub


def _die_with_parent() -> None:
    # If this Python dies (kill -9, a crashed test), the kernel stops tritonserver too: no orphans.
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(1, signal.SIGTERM)          # PR_SET_PDEATHSIG


class Server:
    """A tritonserver process serving one bundle; `with Server(...) as server:` or start()/stop().

    Binds to `host` (loopback by default). `url` is the HTTP endpoint for `Client`; gRPC and
    Prometheus metrics (`/metrics`) are on their own ports. Health and readiness are Triton's own
    (`/v2/health/ready`, `/v2/models/<name>/ready`). `repository`: serve a model repository that
    `edge-caption export-triton` wrote (its model named `model_name`) instead of writing one for
    `bundle`; then `max_batch`, `instances` and `backend` are the repository's own."""

    def __init__(self, bundle: str | Path | None = None, *, host: str = "127.0.0.1", http_port: int = 8000,
                 grpc_port: int = 8001, metrics_port: int = 8002, max_batch: int = 8, instances: int = 1,
                 model_name: str = "edge_caption", backend: str = "auto", start_timeout: float = 120.0,
                 repository: str | Path | None = None):
        self.repository = Path(repository).resolve() if repository is not None else None
        self.bundle, self.host, self.model_name, self.backend = bundle, host, model_name, backend
        self.http_port, self.grpc_port, self.metrics_port = http_port, grpc_port, metrics_port
        self.max_batch, self.instances, self.start_timeout = max_batch, instances, start_timeout
        self.process: subprocess.Popen | None = None
        self.workspace: Path | None = None

    @property
    def url(self) -> str:
        """host:port of the HTTP endpoint, as `Client` and tritonclient take it."""
        return f"{'127.0.0.1' if self.host in ('0.0.0.0', '::') else self.host}:{self.http_port}"

    @property
    def log_path(self) -> Path | None:
        return self.workspace / "tritonserver.log" if self.workspace else None

    def start(self) -> "Server":
        if self.process is not None:
            raise ServeError("this server is already running; stop() it first")
        dist, libs, stub = _triton_dist()
        self.workspace = Path(tempfile.mkdtemp(prefix="edge-caption-triton-"))
        try:
            backends = self.workspace / "backends" / "python"
            backends.mkdir(parents=True)
            for source in (dist / "backends" / "python" / "libtriton_python.so",
                           dist / "backends" / "python" / "triton_python_backend_utils.py", stub):
                (backends / source.name).symlink_to(source)
            if self.repository is None:
                write_repository(self.workspace / "models", self.bundle, model_name=self.model_name,
                                 max_batch=self.max_batch, instances=self.instances, backend=self.backend,
                                 copy_bundle=False)
            self._launch(dist / "bin" / "tritonserver", libs)
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self, binary: Path, libs: Path) -> None:
        env = dict(os.environ)
        # The stub links libpython3.X by name; this interpreter's own must win over a system copy
        # (another build of 3.11 fails inside threading), and the stub finds this environment's
        # site-packages (edge-caption, numpy, cv2) through the python on PATH.
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (sysconfig.get_config_var("LIBDIR"), str(libs), env.get("LD_LIBRARY_PATH")) if p)
        env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
        models = self.repository or self.workspace / "models"
        command = [str(binary), f"--model-repository={models}",
                   f"--backend-directory={self.workspace / 'backends'}",
                   f"--http-address={self.host}", f"--http-port={self.http_port}",
                   f"--grpc-address={self.host}", f"--grpc-port={self.grpc_port}",
                   f"--metrics-address={self.host}", f"--metrics-port={self.metrics_port}",
                   "--allow-gpu-metrics=false", "--exit-on-error=true", "--log-verbose=0",
                   f"--exit-timeout-secs={EXIT_TIMEOUT_S}"]
        log = open(self.log_path, "wb")
        try:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True,
                                            preexec_fn=_die_with_parent)
        finally:
            log.close()

    def _wait_ready(self) -> None:
        ready = f"http://{self.url}/v2/models/{self.model_name}/ready"
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServeError(f"tritonserver exited with status {self.process.returncode} while starting "
                                 f"(a port in use? pick others with --http-port/--grpc-port/--metrics-port):\n"
                                 f"{self.log_tail()}")
            try:
                with urllib.request.urlopen(ready, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise ServeError(f"tritonserver was not ready after {self.start_timeout:.0f} s "
                         f"(raise start_timeout on a slow machine):\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except (OSError, AttributeError):
            return "(no log)"

    def wait(self) -> int:
        """Block until the server exits (Ctrl-C stops it); its exit status."""
        try:
            return self.process.wait()
        finally:
            self.stop()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop tritonserver (SIGTERM, then SIGKILL after `timeout`) and remove its workspace."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)      # the stubs are in its process group
                process.wait()
        if self.workspace is not None:
            shutil.rmtree(self.workspace, ignore_errors=True)
            self.workspace = None

    def __enter__(self) -> "Server":
        return self if self.process is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running at {self.url}" if self.process is not None else "stopped"
        return f"Server(model={self.model_name!r}, {state})"


def serve(bundle: str | Path | None = None, **options) -> Server:
    """Start Triton on `bundle` (None: the shipped model) and return the running `Server`.

    Options: host, http_port, grpc_port, metrics_port, max_batch, instances, model_name, backend,
    start_timeout. Use it as a context manager (`with serve() as server:`) or call `stop()`."""
    return Server(bundle, **options).start()
