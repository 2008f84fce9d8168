"""backend="torch-cuda": the bundle's torch.export programs (export targets "torch").

On a CPU the same programs run through the same session code with device="cpu" (fp32, no CUDA
graphs) and must give `generate()`'s tokens; the tests marked gpu run them on a CUDA GPU: fp32
tokens, CUDA graphs replayed, and how far fp16 / bf16 agree with fp32.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from edge_caption import EdgeCaptioner  # noqa: E402
from edge_caption.bundle import Bundle  # noqa: E402
from edge_caption.decoding import decode  # noqa: E402
from edge_caption.errors import BackendUnavailableError  # noqa: E402
from edge_caption.export.testing import IMAGE  # noqa: E402
from edge_caption.options import DecodeOptions  # noqa: E402

from .test_parity import GRID, reference  # noqa: E402

TORCH = ("onnx", "torch")
# processors the session applies on the device (n-gram blocking reads the logits instead)
ON_DEVICE = [dict(num_beams=1, repetition_penalty=1.3, min_new_tokens=3),
             dict(num_beams=3, repetition_penalty=1.2, min_new_tokens=4, length_penalty=0.7)]
gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _tokens(backend, manifest, pixels, opts):
    return [h.token_ids for per in decode(backend, manifest, backend.encode(pixels), opts) for h in per]


def _pixels(seed: int = 100, count: int = 3):
    return np.random.default_rng(seed).standard_normal((count, 3, IMAGE, IMAGE)).astype(np.float32)


@pytest.mark.parametrize("family", ["vit_gpt2", "blip"])
def test_programs_give_generate_tokens(exported, family):
    from edge_caption.backends.torch_cuda import TorchCudaBackend

    model, bundle = exported(family, 0, TORCH)
    b = Bundle.open(bundle)
    assert all((bundle / f).is_file() for f in b.manifest.torch_programs.static_step.values())
    backend = TorchCudaBackend(b, device="cpu", dtype="float32")
    tok = b.manifest.tokenizer
    pixels = _pixels()
    processed = []
    session = backend.static_session
    backend.static_session = lambda *args: _spy(session(*args), processed)
    for grid in GRID + ON_DEVICE:
        opts = DecodeOptions(max_new_tokens=10).replace(**grid)
        want = reference(model, pixels, opts, len(tok.prompt_ids), set(tok.eos_token_ids))
        processed.clear()
        assert _tokens(backend, b.manifest, pixels, opts) == want, f"{family} {grid}"
        if grid in ON_DEVICE:
            assert processed, "the processors should have run on the device"


def _spy(session, calls):
    processed_top = session.processed_top
    session.processed_top = lambda *args: calls.append(1) or processed_top(*args)
    return session


def test_fp16_programs_run_and_mostly_agree_on_the_cpu(exported):
    """The fp16 programs are traced in fp16 (a cast fp32 program would fail its dtype checks); on a CPU
    they run slowly but run, and agree with fp32 on most captions of a random tiny model."""
    from edge_caption.backends.torch_cuda import TorchCudaBackend

    _, bundle = exported("vit_gpt2", 0, TORCH)
    b = Bundle.open(bundle)
    assert set(b.manifest.torch_programs.static_step) == {"float32", "float16"}
    pixels = _pixels(count=8)
    opts = DecodeOptions(max_new_tokens=8, num_beams=3)
    full = _tokens(TorchCudaBackend(b, device="cpu", dtype="float32"), b.manifest, pixels, opts)
    half = _tokens(TorchCudaBackend(b, device="cpu", dtype="float16"), b.manifest, pixels, opts)
    assert sum(f == h for f, h in zip(full, half)) >= len(full) // 2
    with pytest.raises(Exception, match="bfloat16"):
        TorchCudaBackend(b, device="cpu", dtype="bfloat16")


def test_choosing_it_without_a_gpu_says_why(exported):
    _, bundle = exported("vit_gpt2", 0, TORCH)
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(BackendUnavailableError, match="no CUDA GPU"):
        EdgeCaptioner(bundle, backend="torch-cuda")
    with EdgeCaptioner(bundle) as cap:
        assert cap.backend_name == "onnxruntime" and "torch-cuda: no CUDA GPU" in cap.backend_reason
    _, plain = exported("vit_gpt2", 0)
    with EdgeCaptioner(plain) as cap:
        assert "torch-cuda: the bundle has no torch programs" in cap.backend_reason


def test_auto_falls_back_when_torch_cannot_use_the_gpu(exported, monkeypatch):
    """A driver and a GPU, but a CPU-only torch wheel: auto says so and runs ONNX Runtime."""
    from edge_caption.backends import cuda

    if torch.cuda.is_available():
        pytest.skip("this machine's torch has CUDA")
    _, bundle = exported("vit_gpt2", 0, TORCH)
    monkeypatch.setattr(cuda, "cuda_device_count", lambda: 1)
    with EdgeCaptioner(bundle) as cap:
        assert cap.backend_name == "onnxruntime"
        assert "torch-cuda: torch sees no CUDA GPU" in cap.backend_reason


def test_a_bundle_without_programs_says_how_to_get_them(exported):
    from edge_caption.backends.torch_cuda import TorchCudaBackend

    _, plain = exported("vit_gpt2", 0)
    with pytest.raises(BackendUnavailableError, match="--targets onnx,torch"):
        TorchCudaBackend(Bundle.open(plain), device="cpu", dtype="float32")


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("family", ["vit_gpt2", "blip"])
def test_gpu_fp32_gives_generate_tokens_and_replays_graphs(exported, family):
    from edge_caption.backends.torch_cuda import TorchCudaBackend

    model, bundle = exported(family, 0, TORCH)
    b = Bundle.open(bundle)
    backend = TorchCudaBackend(b, device=0, dtype="float32")
    tok = b.manifest.tokenizer
    pixels = _pixels()
    torch.backends.cuda.matmul.allow_tf32 = False
    for grid in GRID:
        opts = DecodeOptions(max_new_tokens=10).replace(**grid)
        want = reference(model, pixels, opts, len(tok.prompt_ids), set(tok.eos_token_ids))
        for _ in range(2):                  # the second pass replays the graphs the first one captured
            assert _tokens(backend, b.manifest, pixels, opts) == want, f"{family} {grid}"
    assert backend._graphs, "no step was captured into a CUDA graph"
    backend.close()


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float16"])
def test_gpu_half_precision_agreement(exported, dtype):
    """Not exact by design: how many captions fp16 keeps from fp32, on a random tiny model."""
    from edge_caption.backends.torch_cuda import TorchCudaBackend

    _, bundle = exported("vit_gpt2", 0, TORCH)
    b = Bundle.open(bundle)
    pixels = _pixels(count=32)
    opts = DecodeOptions(max_new_tokens=10, num_beams=3)
    full = _tokens(TorchCudaBackend(b, device=0, dtype="float32"), b.manifest, pixels, opts)
    half = _tokens(TorchCudaBackend(b, device=0, dtype=dtype), b.manifest, pixels, opts)
    agreement = sum(a == h for a, h in zip(full, half)) / len(full)
    print(f"{dtype} agrees with fp32 on {agreement:.0%} of {len(full)} captions")
    assert agreement >= 0.5


@pytest.mark.slow
def test_gpu_benchmark_runs_end_to_end(tmp_path):
    """bench_gpu.py --smoke: every contender wired, on a tiny model, on whatever device is here."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"
    run = subprocess.run([sys.executable, str(script), "--smoke", "--work", str(tmp_path)], capture_output=True,
                         text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    table = json.loads(run.stdout[run.stdout.index("{"):])["ms per caption"]
    assert table["ours, torch-cuda"]["W1 b1 beam3"]["agreement"] == 1.0
