"""Triton serving: concurrent clients get the in-process captions; bad requests fail alone."""
from __future__ import annotations

import os
import select
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest

pytest.importorskip("pytriton")
pytest.importorskip("tritonclient.http")

import tritonclient.http as http  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

from edge_caption import EdgeCaptioner, FrameError, OptionError  # noqa: E402
from edge_caption.serve import Client, Server, serve, write_repository  # noqa: E402

from .conftest import free_ports, write_scenes  # noqa: E402

pytestmark = pytest.mark.scale


@pytest.fixture(scope="module")
def server():
    http_port, grpc_port, metrics_port = free_ports(3)
    with serve(http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port, max_batch=8) as running:
        yield running
    assert running.process is None


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_scenes(tmp_path_factory.mktemp("serve-scenes"), 24)


@pytest.fixture(scope="module")
def local():
    with EdgeCaptioner() as captioner:
        yield captioner


def test_eight_threads_get_the_in_process_captions(server, images, local):
    import cv2

    expected = {p: local.caption(p) for p in images}
    client = Client(server.url)
    got: dict = {}
    failures: list = []

    def work(k: int) -> None:
        try:
            for j, path in enumerate(images[k::8] * 2):
                # paths, file bytes and BGR frames all reach the server as the same pixels
                image = [path, open(path, "rb").read(), cv2.imread(path)][(k + j) % 3]
                got.setdefault(path, []).append(client.caption(image))
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    client.close()
    assert not failures, failures
    assert sorted(got) == sorted(images)
    for path, captions in got.items():
        for caption in captions:
            assert caption.text == expected[path].text and caption.token_ids == expected[path].token_ids
            assert caption.score == pytest.approx(expected[path].score, abs=1e-5)
    # Triton's dynamic batcher put several requests into one execution (one caption_batch)
    stats = http.InferenceServerClient(server.url).get_inference_statistics("edge_caption")["model_stats"][0]
    assert stats["execution_count"] < stats["inference_count"]


def test_decoding_options_and_batched_rows(server, images, local):
    client = Client(server.url)
    caption = client.caption(images[0], num_beams=3, max_new_tokens=6)
    assert caption.token_ids == local.caption(images[0], num_beams=3, max_new_tokens=6).token_ids
    batch = client.caption_batch(images[:3])        # rows of different lengths, one request
    assert [c.text for c in batch] == [local.caption(p).text for p in images[:3]]


def test_bad_requests_get_errors_and_the_server_keeps_serving(server, images, local):
    client = Client(server.url)
    with pytest.raises(FrameError, match="not a JPEG or PNG"):
        client.caption(b"this is not an image")
    with pytest.raises(OptionError, match="num_beams must be between 1 and 16"):
        client.caption(images[0], num_beams=0)
    with pytest.raises(OptionError, match="max_new_tokens must be between 1 and 256"):
        client.caption(images[0], max_new_tokens=10_000)
    raw = http.InferenceServerClient(server.url)
    empty = http.InferInput("image", [1, 0], "UINT8")
    empty.set_data_from_numpy(np.zeros((1, 0), np.uint8))
    with pytest.raises(InferenceServerException, match="image is empty"):
        raw.infer("edge_caption", [empty])
    floats = http.InferInput("image", [1, 4], "FP32")
    floats.set_data_from_numpy(np.zeros((1, 4), np.float32))
    with pytest.raises(InferenceServerException, match="(?i)data.?type|FP32"):
        raw.infer("edge_caption", [floats])

    # bad and good requests at once, so Triton batches them together: only the bad ones fail
    results: dict = {}

    def send(k: int) -> None:
        try:
            results[k] = Client(server.url).caption(b"garbage" if k % 2 else images[k])
        except FrameError as exc:
            results[k] = exc

    threads = [threading.Thread(target=send, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for k in range(8):
        if k % 2:
            assert isinstance(results[k], FrameError)
        else:
            assert results[k].text == local.caption(images[k]).text
    assert client.ready() and client.caption(images[1]).text == local.caption(images[1]).text


def test_metrics_and_health_are_tritons(server):
    with urllib.request.urlopen(f"http://{server.url}/v2/health/ready", timeout=5) as r:
        assert r.status == 200
    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5) as r:
        assert b"nv_inference_request_success" in r.read()


def test_export_triton_repository_serves_the_same(tmp_path, images, local):
    model_dir = write_repository(tmp_path / "repo", model_name="captioner", max_batch=4, instances=2)
    assert (model_dir / "1" / "bundle.ecap" / "manifest.json").is_file()
    assert 'count: 2' in (model_dir / "config.pbtxt").read_text()
    ports = free_ports(3)
    with Server(repository=tmp_path / "repo", model_name="captioner", http_port=ports[0], grpc_port=ports[1],
                metrics_port=ports[2]) as running:
        client = Client(running.url, model_name="captioner")
        assert client.caption(images[2]).text == local.caption(images[2]).text
    with pytest.raises(FileExistsError, match="already exists"):
        write_repository(tmp_path / "repo", model_name="captioner")


def _read_until(process: subprocess.Popen, text: str, timeout: float) -> str:
    """What `process` printed up to `text`, or until it exits or `timeout` passes (raw reads: a
    buffered reader could hold the line select() is waiting for)."""
    said, deadline = b"", time.monotonic() + timeout
    while text.encode() not in said:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([process.stdout], [], [], left)[0]:
            break
        chunk = os.read(process.stdout.fileno(), 4096)
        if not chunk:
            break
        said += chunk
    return said.decode(errors="replace")


def test_cli_serve_answers_and_stops_on_ctrl_c(images, local):
    ports = free_ports(3)
    command = [sys.executable, "-m", "edge_caption.cli", "serve", "--http-port", str(ports[0]),
               "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2])]
    # started with SIGINT ignored, as a shell starts a background job (CI's runner may be one): serve
    # must set its own handler, or Ctrl-C does nothing
    shell = f"trap '' INT; exec {shlex.join(command)}"
    process = subprocess.Popen(["sh", "-c", shell], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        said = _read_until(process, "serving model 'edge_caption'", timeout=120)    # printed once Triton answers
        assert "serving model 'edge_caption'" in said, said
        client = Client(f"127.0.0.1:{ports[0]}")
        assert client.ready()
        assert client.caption(images[3]).text == local.caption(images[3]).text
        client.close()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 130
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    with pytest.raises(OSError):        # nothing listens there any more
        urllib.request.urlopen(f"http://127.0.0.1:{ports[0]}/v2/health/ready", timeout=2)


def test_port_in_use_is_a_clear_error():
    import socket

    from edge_caption.errors import ServeError

    ports = free_ports(3)
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", ports[0]))
    blocker.listen()
    try:
        with pytest.raises(ServeError, match="port in use"):
            serve(http_port=ports[0], grpc_port=ports[1], metrics_port=ports[2], start_timeout=60)
    finally:
        blocker.close()
