"""backend="torch-cuda": the bundle's torch.export programs (export targets "torch") and the search
on the device.

On a CPU the same programs and the same device loop run on CPU tensors with device="cpu" (fp32, no
CUDA graphs) and must give `generate()`'s tokens, reading the device once per chunk of steps; the
tests marked gpu run them on a CUDA GPU: fp32 tokens with CUDA graphs replayed, no host
synchronisation inside a caption, and how far fp16 agrees with fp32.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from edge_caption import EdgeCaptioner  # noqa: E402
from edge_caption.bundle import Bundle  # noqa: E402
from edge_caption.decoding import decode  # noqa: E402
from edge_caption.errors import BackendUnavailableError, OptionError  # noqa: E402
from edge_caption.export.testing import IMAGE  # noqa: E402
from edge_caption.options import DecodeOptions  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

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
def test_device_loop_gives_generate_tokens(exported, family):
    """The whole search as tensor ops (backends/torch_cuda/search.py), run on CPU tensors: generate()'s
    tokens on the parity grid, greedy and beam, every processor on the device."""
    from edge_caption.backends.torch_cuda import TorchCudaBackend

    model, bundle = exported(family, 0, TORCH)
    b = Bundle.open(bundle)
    assert all((bundle / f).is_file() for f in b.manifest.torch_programs.static_step.values())
    backend = TorchCudaBackend(b, device="cpu", dtype="float32")
    tok = b.manifest.tokenizer
    pixels = _pixels()
    for grid in GRID + ON_DEVICE:
        opts = DecodeOptions(max_new_tokens=10).replace(**grid)
        want = reference(model, pixels, opts, len(tok.prompt_ids), set(tok.eos_token_ids))
        assert _tokens(backend, b.manifest, pixels, opts) == want, f"{family} {grid}"
        loop = backend.last_loop
        assert 1 <= loop.reads <= loop.chunks


class _NoHostReads(TorchDispatchMode):
    """Fails on any read of a tensor's value by the host (.item(), bool(t), .tolist(), int(t))."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in (torch.ops.aten._local_scalar_dense.default, torch.ops.aten.item.default):
            raise AssertionError(f"the decoding loop read a tensor's value on the host ({func})")
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("grid", [dict(num_beams=3, min_new_tokens=6, max_new_tokens=6),
                                  dict(num_beams=1, min_new_tokens=6, max_new_tokens=6),
                                  dict(num_beams=2, no_repeat_ngram_size=2, repetition_penalty=1.3, max_new_tokens=9)])
def test_a_caption_reads_the_device_once_per_chunk(exported, grid):
    """No value crosses to the host inside the loop; the state comes back in one copy per chunk, and a
    caption that cannot stop early (min_new_tokens = max_new_tokens, as W1) is one chunk, one read."""
    from edge_caption.backends.torch_cuda import TorchCudaBackend

    _, bundle = exported("vit_gpt2", 0, TORCH)
    b = Bundle.open(bundle)
    backend = TorchCudaBackend(b, device="cpu", dtype="float32")
    opts = DecodeOptions().replace(**grid)
    memory = backend.encode(_pixels(count=2))
    with _NoHostReads():
        found = decode(backend, b.manifest, memory, opts)
    assert len(found) == 2 and all(per[0].token_ids for per in found)
    loop = backend.last_loop
    if opts.min_new_tokens == opts.max_new_tokens:
        assert loop.chunks == 1 and loop.reads == 1
    assert loop.reads <= loop.chunks


def test_frames_are_preprocessed_where_the_backend_runs(exported):
    """caption() and caption_batch() hand OpenCV frames to the backend's own preprocessing (on a GPU:
    uint8 uploads, resize there): the same captions as the CPU path through ONNX Runtime."""
    _, bundle = exported("vit_gpt2", 0, TORCH)
    rng = np.random.default_rng(5)
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((48, 64), (120, 90), (48, 64))]
    with EdgeCaptioner(bundle, backend="onnxruntime") as ref:
        want = [c.token_ids for c in ref.caption_batch(frames)] + [ref.caption(frames[0][:, :, 0]).token_ids]
    with EdgeCaptioner(bundle, backend="torch-cuda", device="cpu") as cap:
        calls = []
        preprocess = cap._backend.preprocess_frames
        cap._backend.preprocess_frames = lambda *a: calls.append(a[1]) or preprocess(*a)
        got = [c.token_ids for c in cap.caption_batch(frames)] + [cap.caption(frames[0][:, :, 0]).token_ids]
    assert got == want
    assert calls == ["bgr", "rgb"]          # a grayscale frame is converted on the host first


def test_the_search_state_is_the_declared_one():
    """search.py allocates exactly decoding/contract.py's state, and packs the result into one arena
    the host reads at once."""
    from edge_caption.backends.torch_cuda.search import DTYPES, make_search, result_views
    from edge_caption.decoding.contract import BEAM_STATE, GREEDY_STATE, SearchPlan

    for beams, spec in ((3, BEAM_STATE), (1, GREEDY_STATE)):
        plan = SearchPlan(2, beams, (5, 6), (7, 8), DecodeOptions(num_beams=beams, max_new_tokens=4))
        search = make_search(plan, torch.device("cpu"))
        assert list(search.state) == [s.name for s in spec]
        for s in spec:
            t = search.state[s.name]
            assert t.shape == plan.shape(s) and t.dtype == DTYPES[s.dtype], s.name
        name = plan.result_names()[0]
        search.state[name].fill_(7)
        search.pack()
        views = result_views(search.arena, plan)
        assert set(views) == set(plan.result_names())
        assert (views[name] == 7).all()


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
    with pytest.raises(OptionError, match="bfloat16"):
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
    """Uncompiled fp32 programs with CUDA graphs: generate()'s tokens exactly, first pass eager, later
    passes replaying the captured encoder and decoding graphs."""
    from edge_caption.backends.torch_cuda import TorchCudaBackend

    model, bundle = exported(family, 0, TORCH)
    b = Bundle.open(bundle)
    backend = TorchCudaBackend(b, device=0, dtype="float32", compile=False)
    tok = b.manifest.tokenizer
    pixels = _pixels()
    torch.backends.cuda.matmul.allow_tf32 = False
    model = copy.deepcopy(model).cuda()      # the fixture shares the CPU model with other tests
    for grid in GRID + ON_DEVICE:
        opts = DecodeOptions(max_new_tokens=10).replace(**grid)
        want = reference(model, pixels, opts, len(tok.prompt_ids), set(tok.eos_token_ids))
        for _ in range(3):          # eager, then capture + replay, then replay
            assert _tokens(backend, b.manifest, pixels, opts) == want, f"{family} {grid}"
        assert backend.last_loop.captured, "the decoding was not captured into CUDA graphs"
    assert any(e.graph is not None for e in backend._encoders.values()), "the encoder was not captured"
    backend.close()


@gpu
@pytest.mark.gpu
def test_gpu_compiled_fp32_agrees_and_a_caption_never_synchronises(exported):
    """Inductor-compiled fp32 programs (fused kernels round differently from eager ones: agreement, not
    identity), and a whole caption under torch.cuda.set_sync_debug_mode("error") after warm-up."""
    from edge_caption.backends.torch_cuda import TorchCudaBackend

    model, bundle = exported("vit_gpt2", 0, TORCH)
    b = Bundle.open(bundle)
    backend = TorchCudaBackend(b, device=0, dtype="float32", compile=True)
    tok = b.manifest.tokenizer
    pixels = _pixels(count=8)
    opts = DecodeOptions(max_new_tokens=10, num_beams=3)
    want = reference(copy.deepcopy(model).cuda(), pixels, opts, len(tok.prompt_ids), set(tok.eos_token_ids))
    for _ in range(2):
        got = _tokens(backend, b.manifest, pixels, opts)
    agreement = sum(a == w for a, w in zip(got, want)) / len(want)
    print(f"compiled fp32 agrees with generate() fp32 on {agreement:.0%} of {len(want)} captions")
    assert agreement >= 0.75
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        assert _tokens(backend, b.manifest, pixels, opts) == got
        timings = backend.timings()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert timings["encode"] > 0 and timings["decode"] > 0
    assert backend.last_loop.reads <= backend.last_loop.chunks


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
    full = _tokens(TorchCudaBackend(b, device=0, dtype="float32", compile=False), b.manifest, pixels, opts)
    half = _tokens(TorchCudaBackend(b, device=0, dtype=dtype, compile=False), b.manifest, pixels, opts)
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


class _TableState:
    """The host loop's DecoderState interface over a fixed table: logits = table[position, last token],
    so the reference search and the device loop see the same model without exporting one."""

    top_k = 0

    def __init__(self, table: np.ndarray, images: int):
        self.table, self.position, self.extras = table, 0, {}
        self.images = np.arange(images)

    @property
    def active(self) -> int:
        return len(self.images)

    def step(self, input_ids):
        for column in range(input_ids.shape[1]):
            logits = self.table[self.position, input_ids[:, column]]
            self.position += 1
        return logits.astype(np.float32)

    def reorder(self, rows):
        pass

    def keep(self, images):
        self.images = self.images[images]


def _table(seed: int, steps: int, vocab: int, eos: tuple[int, ...]) -> np.ndarray:
    """Random logits whose EOS grows more likely with every position: searches stop early."""
    table = np.random.default_rng(seed).standard_normal((steps, vocab, vocab)).astype(np.float32) * 2
    for e in eos:
        table[:, :, e] += np.linspace(-3, 6, steps, dtype=np.float32)[:, None]
    return table


SEARCH_GRID = [dict(num_beams=1), dict(num_beams=1, min_new_tokens=3, repetition_penalty=1.5),
               dict(num_beams=3), dict(num_beams=3, early_stopping=True, length_penalty=0.5),
               dict(num_beams=4, early_stopping="never", length_penalty=1.5, num_return_sequences=2),
               dict(num_beams=2, no_repeat_ngram_size=2, repetition_penalty=1.2, min_new_tokens=2),
               dict(num_beams=3, length_penalty=-0.5, min_new_tokens=4)]


@pytest.mark.parametrize("grid", SEARCH_GRID)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_device_loop_stops_early_as_the_reference_does(grid, seed):
    """The device loop against the numpy reference on a table model that makes EOS likely: same tokens,
    same scores (to float32 rounding), and an early stop read at the end of a chunk before the last."""
    from edge_caption.backends.torch_cuda.loop import CaptionLoop
    from edge_caption.decoding import beam_search, greedy_search
    from edge_caption.decoding.contract import SearchPlan

    prompt, eos, vocab, images = (1, 2), (3, 4), 24, 3
    opts = DecodeOptions(max_new_tokens=14).replace(**grid)
    table = _table(seed, len(prompt) + opts.max_new_tokens, vocab, eos)
    search = greedy_search if opts.num_beams == 1 else beam_search
    want = search(_TableState(table, images), np.array(prompt), np.array(eos), opts)
    table_t = torch.from_numpy(table)

    def step(ids, position, beam_index, beam_scores, memory):
        return (table_t.index_select(0, position)[0].index_select(0, ids[:, 0]),)

    plan = SearchPlan(images, opts.num_beams, prompt, eos, opts)
    loop = CaptionLoop(step, plan, [torch.zeros(images, 1)], [], torch.float32, graphs=False)
    with _NoHostReads():
        got = loop.run([torch.zeros(images, 1)])
    assert [[h[0] for h in per] for per in got] == [[h[0] for h in per] for per in want], grid
    for per_got, per_want in zip(got, want):
        for g, w in zip(per_got, per_want):
            assert g[1] == pytest.approx(w[1], rel=1e-5, abs=1e-5)
    if max(len(h[0]) for per in got for h in per) < opts.max_new_tokens - 4:
        assert loop.reads < loop.chunks, "the search finished early but the loop read every chunk"
