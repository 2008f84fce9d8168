"""The TensorRT backend end to end against the TensorRT / cuda-python doubles (tests/trt_double):
engines built by `build_engines` from the tiny parity models and the shipped model, captions
identical to `generate()` (greedy and beam) and to ONNX Runtime, engines refused where they were
not built, `backend="auto"` choosing and explaining, CUDA graphs replayed and their fallback.
"""
from __future__ import annotations

import logging

import numpy as np
import pytest

from edge_caption import EdgeCaptioner
from edge_caption.bundle import Bundle
from edge_caption.captioner import default_bundle_path
from edge_caption.decoding.contract import DeviceLoopBackend, StaticStepBackend
from edge_caption.errors import BackendUnavailableError, EngineMismatchError, OptionError
from edge_caption.export.tensorrt import BuildConfig, build_engines
from edge_caption.options import DecodeOptions
from edge_caption.evaluation.scenes import split_samples

from .trt_double import install

GRID = [dict(num_beams=1), dict(num_beams=3), dict(num_beams=4, length_penalty=1.5, num_return_sequences=2)]


def build(bundle, tmp_path, **config):
    config = {"batch_sizes": (1, 3), "num_beams": 4, "max_new_tokens": 10, "timing_cache": tmp_path / "timing.cache",
              **config}
    return build_engines(bundle, BuildConfig(**config), out=tmp_path / "engines.ecap", progress=False)


@pytest.fixture
def trt(monkeypatch):
    return install(monkeypatch)


@pytest.fixture
def shipped(trt, tmp_path):
    return build(default_bundle_path(), tmp_path)


def token_ids(cap, pixels, **decoding):
    got = []
    for caption in cap.caption_pixels(pixels, **decoding):
        got += [caption.token_ids] + [alt.token_ids for alt in caption.alternatives]
    return got


@pytest.mark.parametrize("family", ["vit_gpt2", "blip"])
def test_tokens_match_generate(exported, trt, tmp_path, family):
    torch = pytest.importorskip("torch")
    from .test_parity import reference

    model, bundle = exported(family, 0)
    engines = build(bundle, tmp_path)
    pixels = np.random.default_rng(100).standard_normal((3, 3, 32, 32)).astype(np.float32)
    with EdgeCaptioner(engines, backend="tensorrt") as cap:
        assert cap.backend_name == "tensorrt"
        tok = cap.manifest.tokenizer
        pixels = pixels[:, :, :cap.manifest.preprocess.size[0], :cap.manifest.preprocess.size[1]]
        for grid in GRID:
            opts = DecodeOptions(max_new_tokens=10).replace(**grid)
            with torch.no_grad():
                ref = reference(model, pixels, opts, len(tok.prompt_ids), set(tok.eos_token_ids))
            assert token_ids(cap, pixels, **opts.to_dict()) == ref, f"{family} {grid}"


@pytest.mark.parametrize("family", ["vit_gpt2", "blip"])
def test_static_step_engine_gives_generate_tokens(exported, trt, tmp_path, family):
    pytest.importorskip("torch")
    from .test_parity import reference

    model, bundle = exported(family, 0, ("onnx", "tensorrt"))
    engines = build(bundle, tmp_path)
    assert sorted(e.graph for e in Bundle.open(engines).manifest.engines) == ["encoder", "static_step"]
    pixels = np.random.default_rng(100).standard_normal((3, 3, 32, 32)).astype(np.float32)
    with EdgeCaptioner(engines, backend="tensorrt") as cap:
        assert cap._backend.static_step and "static step" in cap._backend.describe
        # the host loop's contract (decoding/contract.py), which decode() dispatches on
        assert isinstance(cap._backend, StaticStepBackend) and not isinstance(cap._backend, DeviceLoopBackend)
        session_class = type(cap._backend.static_session(cap._backend.encode(np.zeros((1, 3, 32, 32), np.float32)),
                                                         1, 4))
        assert all(callable(getattr(session_class, m, None)) for m in ("run", "top", "logits", "keep"))
        tok = cap.manifest.tokenizer
        for grid in GRID + [dict(num_beams=2, repetition_penalty=1.3, min_new_tokens=2)]:
            opts = DecodeOptions(max_new_tokens=10).replace(**grid)
            ref = reference(model, pixels, opts, len(tok.prompt_ids), set(tok.eos_token_ids))
            assert token_ids(cap, pixels, **opts.to_dict()) == ref, f"{family} {grid}"
    _, cudart = trt
    assert cudart.state().counts["graph_launch"] > 0     # steps whose rows and parity came before were replayed
    assert not cudart.state().allocations, "close() must free every device buffer"


def test_export_with_the_tensorrt_target_builds_engines_where_tensorrt_is(trt, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from edge_caption.export import export, testing

    monkeypatch.setenv("HOME", str(tmp_path))          # the default timing cache lives under ~/.cache
    said = []
    out = export(testing.tiny_vit_gpt2(0), tmp_path / "t.ecap", tokenizer=testing.tiny_tokenizer(kind="bpe"),
                 processor=testing.tiny_image_processor("vit"), targets=("onnx", "tensorrt"), progress=said.append)
    assert sorted(e.graph for e in Bundle.open(out).manifest.engines) == ["encoder", "static_step"]
    install(monkeypatch, devices=[])                    # TensorRT, but no GPU: the bundle, and how to build
    out = export(testing.tiny_vit_gpt2(0), tmp_path / "n.ecap", tokenizer=testing.tiny_tokenizer(kind="bpe"),
                 processor=testing.tiny_image_processor("vit"), targets=("onnx", "tensorrt"), progress=said.append)
    assert not Bundle.open(out).manifest.engines
    assert f"edge-caption build {out}" in said[-1]


def test_static_step_moves_no_cache_and_reads_back_only_candidates(exported, trt, tmp_path):
    _, bundle = exported("vit_gpt2", 0, ("onnx", "tensorrt"))
    engines = build(bundle, tmp_path)
    _, cudart = trt
    pixels = np.random.default_rng(3).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with EdgeCaptioner(engines, backend="tensorrt") as cap:
        top_k = cap.manifest.static_step.top_k
        rows = []
        static_session = cap._backend.static_session

        def spying(*args):
            session = static_session(*args)
            run = session.run
            session.run = lambda ids, *rest: rows.append(len(ids)) or run(ids, *rest)
            return session

        cap._backend.static_session = spying

        def counts(**decoding):
            rows.clear()
            before = dict(cudart.state().counts)
            cap.caption_pixels(pixels, **decoding)
            return {k: v - before.get(k, 0) for k, v in cudart.state().counts.items()}, sum(rows), len(rows)

        counts(num_beams=3, max_new_tokens=4)          # warm-up: the encoder's graph is captured
        short, _, short_steps = counts(num_beams=3, max_new_tokens=3, min_new_tokens=3)
        long, _, long_steps = counts(num_beams=3, max_new_tokens=9, min_new_tokens=9)
        assert long_steps > short_steps
        # device-to-device traffic is the encoder's output and the memory copied in, once per batch:
        # a longer caption moves no more, so no cache row is ever copied between steps
        assert long["d2d_bytes"] == short["d2d_bytes"] and long["d2d"] == short["d2d"]
        # without history-dependent processors only the top-k candidates come down: 12 bytes per entry
        plain, row_steps, steps = counts(num_beams=3, max_new_tokens=9)
        assert plain["d2h_bytes"] == 12 * top_k * row_steps
        assert plain["h2d"] == 1 + steps               # the pixels, then one packed copy per step
        with pytest.raises(OptionError, match="--max-new-tokens 30"):
            cap.caption_pixels(pixels, max_new_tokens=30)


def test_shipped_model_matches_onnxruntime_with_cuda_graphs(shipped, trt):
    frames = [s.image for s in split_samples("test", count=3)]
    with EdgeCaptioner(shipped, backend="onnxruntime") as ref, EdgeCaptioner(shipped, backend="tensorrt") as cap:
        for beams in (1, 3):
            expected = [c.token_ids for c in ref.caption_batch(frames, num_beams=beams)]
            assert [c.token_ids for c in cap.caption_batch(frames, num_beams=beams)] == expected
            assert [c.token_ids for c in cap.caption_batch(frames[:1], num_beams=beams)] == expected[:1]
        traced = cap.caption(frames[0], return_attention=True)
        assert traced.attention is not None and traced.attention.shape[0] == len(traced.token_ids)
    _, cudart = trt
    # the RNN step's shapes repeat, so after a warm-up it was replayed from captured graphs
    assert cudart.state().counts["graph_launch"] > 10
    assert not cudart.state().allocations, "close() must free every device buffer"


def test_per_step_only_ids_go_up_and_logits_come_down(shipped, trt):
    _, cudart = trt
    frames = [s.image for s in split_samples("test", count=3)]
    with EdgeCaptioner(shipped, backend="tensorrt") as cap:
        rows = []
        step = cap._backend.step
        cap._backend.step = lambda ids, memory, state: rows.append(len(ids)) or step(ids, memory, state)
        before = dict(cudart.state().counts)
        cap.caption_batch(frames, num_beams=3)
        counts = {k: v - before.get(k, 0) for k, v in cudart.state().counts.items()}
    m = cap.manifest
    pixels = 3 * 3 * m.preprocess.size[0] * m.preprocess.size[1] * 4
    # up: the pixels once, then 8 bytes per row per step (int64 ids); the state never leaves the GPU
    assert counts["h2d_bytes"] == pixels + 8 * sum(rows)
    # down: per row per step the logits and the attention weights (float32), nothing else
    cells = m.attention_grid[0] * m.attention_grid[1]
    assert counts["d2h_bytes"] == 4 * (m.vocab_size + cells) * sum(rows)


def test_capture_failure_falls_back(shipped, trt, monkeypatch, caplog):
    _, cudart = trt
    monkeypatch.setattr(cudart, "cudaStreamBeginCapture",
                        lambda stream, mode: (cudart.cudaError_t.cudaErrorStreamCaptureUnsupported,))
    frames = [s.image for s in split_samples("test", count=3)]
    with EdgeCaptioner(shipped, backend="onnxruntime") as ref:
        expected = [c.token_ids for c in ref.caption_batch(frames)]
    with caplog.at_level(logging.WARNING), EdgeCaptioner(shipped, backend="tensorrt") as cap:
        assert [c.token_ids for c in cap.caption_batch(frames)] == expected
    assert "running it without graphs" in caplog.text
    assert cudart.state().counts["graph_launch"] == 0


def test_auto_picks_tensorrt_and_says_why(shipped, trt):
    with EdgeCaptioner(shipped) as cap:
        assert cap.backend_name == "tensorrt"
        assert "TensorRT 10.3.0" in cap.backend_reason and "sm_8.7" in cap.backend_reason


def test_engine_for_another_gpu_is_refused_with_the_build_command(shipped, monkeypatch):
    install(monkeypatch, devices=[(9, 0)])
    with pytest.raises(EngineMismatchError, match=rf"sm_8.7 TensorRT 10.3.0.*sm_9.0.*edge-caption build {shipped}"):
        EdgeCaptioner(shipped, backend="tensorrt")
    with EdgeCaptioner(shipped) as cap:             # auto falls back and says why
        assert cap.backend_name == "onnxruntime"
        assert "tensorrt: the TensorRT engines" in cap.backend_reason and "sm_9.0" in cap.backend_reason


def test_engine_for_another_tensorrt_is_refused(shipped, monkeypatch):
    install(monkeypatch, version="11.4.0")
    with pytest.raises(EngineMismatchError, match="TensorRT 11.4.0.*edge-caption build"):
        EdgeCaptioner(shipped, backend="tensorrt")


def test_no_gpu_or_no_tensorrt_falls_back(shipped, monkeypatch):
    install(monkeypatch, devices=[])
    with EdgeCaptioner(shipped) as cap:
        assert cap.backend_name == "onnxruntime" and "no CUDA GPU" in cap.backend_reason
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", None)
    with pytest.raises(BackendUnavailableError, match="JetPack"):
        EdgeCaptioner(shipped, backend="tensorrt")


def test_batch_beyond_the_profiles_says_how_to_rebuild(shipped, trt):
    frames = [s.image for s in split_samples("test", count=4)]     # built for at most 3 images
    with EdgeCaptioner(shipped, backend="tensorrt") as cap, pytest.raises(OptionError, match="--batch"):
        cap.caption_batch(frames)


def test_tensorrt_11_builds_and_runs(monkeypatch, tmp_path):
    trt, _ = install(monkeypatch, version="11.4.0", devices=[(12, 0)])
    engines = build(default_bundle_path(), tmp_path)
    frames = [s.image for s in split_samples("test", count=2)]
    with EdgeCaptioner(engines, backend="onnxruntime") as ref, EdgeCaptioner(engines, backend="tensorrt") as cap:
        assert [c.token_ids for c in cap.caption_batch(frames)] == [c.token_ids for c in ref.caption_batch(frames)]
