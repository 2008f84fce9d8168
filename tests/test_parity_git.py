"""GIT end to end: the ONNX bundle, the TensorRT-shaped static step (on ONNX Runtime) and the torch
programs (on the CPU) give `generate()`'s tokens exactly, on the other families' parity grid.

GIT's memory is each layer's image-prefix K/V (export/adapters/git.py); "git_two_eos" stops on two ids.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from edge_caption import EdgeCaptioner  # noqa: E402
from edge_caption.backends.onnxruntime import OnnxRuntimeBackend  # noqa: E402
from edge_caption.bundle import Bundle  # noqa: E402
from edge_caption.decoding import decode  # noqa: E402
from edge_caption.export.testing import IMAGE  # noqa: E402
from edge_caption.options import DecodeOptions  # noqa: E402

from .test_parity import GRID, grid_matches_generate, reference  # noqa: E402
from .test_tensorrt_backend import trt  # noqa: E402,F401  (the TensorRT double, as a fixture)

# each export takes ~30 s here: the default run keeps three bundles, `-m slow` adds the rest
slow = pytest.mark.slow
BUNDLES = [("git", 0), ("git", 1), ("git_two_eos", 0), pytest.param("git_two_eos", 1, marks=slow)]


def _pixels(seed: int) -> np.ndarray:
    return np.random.default_rng(100 + seed).standard_normal((3, 3, IMAGE, IMAGE)).astype(np.float32)


def _tokens(backend, manifest, pixels, opts):
    return [h.token_ids for per in decode(backend, manifest, backend.encode(pixels), opts) for h in per]


@pytest.mark.parametrize("family,seed", BUNDLES)
def test_bundle_matches_generate(exported, family, seed):
    model, bundle = exported(family, seed)
    pixels = _pixels(seed)
    with EdgeCaptioner(bundle, backend="onnxruntime") as cap:
        tok = cap.manifest.tokenizer
        assert cap.manifest.family == "git" and list(cap.manifest.memory)[:2] == ["prefix_key_0", "prefix_value_0"]
        got = grid_matches_generate(cap, model, pixels, f"{family} seed {seed}")
    stopped = sum(1 for ids in got if ids and ids[-1] in tok.eos_token_ids)
    assert stopped > 0, "no caption stopped on an EOS: the test would not exercise stopping"


@pytest.mark.parametrize("family", [pytest.param("git", marks=slow), "git_two_eos"])
def test_static_step_and_torch_programs_match_generate(exported, family):
    """targets=("onnx", "torch") writes the TensorRT-shaped step and the torch.export programs: the
    static step on ONNX Runtime and the programs on CPU tensors (the torch-cuda backend's device loop)
    give generate()'s tokens."""
    from edge_caption.backends.torch_cuda import TorchCudaBackend

    model, bundle = exported(family, 0, ("onnx", "torch"))
    b = Bundle.open(bundle)
    m, tok = b.manifest, b.manifest.tokenizer
    assert m.static_step is not None and m.static_step.top_k == 8 * (1 + len(tok.eos_token_ids))
    static = OnnxRuntimeBackend(b, static_step=True)
    programs = TorchCudaBackend(b, device="cpu", dtype="float32")
    pixels = _pixels(0)
    for grid in GRID:
        opts = DecodeOptions(max_new_tokens=10).replace(**grid)
        want = reference(model, pixels, opts, len(tok.prompt_ids), set(tok.eos_token_ids))
        assert _tokens(static, m, pixels, opts) == want, f"static step {family} {grid}"
        assert _tokens(programs, m, pixels, opts) == want, f"torch programs {family} {grid}"


def test_a_prompted_bundle_continues_the_prompt(tmp_path):
    """A text prompt ([CLS] + its tokens) is baked into the bundle; the captions continue it as generate() does."""
    from edge_caption.export import export
    from edge_caption.export import testing as models

    model, tok = models.tiny_git(1), models.tiny_tokenizer(kind="wordpiece")
    bundle = export(model, tmp_path / "p.ecap", tokenizer=tok, processor=models.tiny_image_processor("clip"),
                    prompt="a photo of", progress=False)
    pixels = _pixels(1)
    with EdgeCaptioner(bundle, backend="onnxruntime") as cap:
        ids = list(cap.manifest.tokenizer.prompt_ids)
        assert ids == [models.WP_CLS] + tok("a photo of", add_special_tokens=False).input_ids
        for opts in (DecodeOptions(max_new_tokens=8), DecodeOptions(max_new_tokens=8, num_beams=3)):
            with torch.no_grad():
                out = model.generate(pixel_values=torch.from_numpy(pixels), input_ids=torch.tensor([ids] * 3),
                                     do_sample=False, **opts.to_dict())
            want = []
            for row in out.tolist():
                gen = row[len(ids):]
                want.append(tuple(gen[: gen.index(models.WP_SEP) + 1] if models.WP_SEP in gen else gen))
            assert [c.token_ids for c in cap.caption_pixels(pixels, **opts.to_dict())] == want, opts


def test_tensorrt_engines_from_the_static_step_give_generate_tokens(exported, trt, tmp_path):
    """`edge-caption build` on a GIT bundle (against the TensorRT double, tests/trt_double): the engines
    take the prefix K/V as per-image memory and give generate()'s tokens."""
    from .test_tensorrt_backend import GRID as TRT_GRID, build, token_ids

    model, bundle = exported("git_two_eos", 0, ("onnx", "torch"))
    engines = build(bundle, tmp_path)
    assert sorted(e.graph for e in Bundle.open(engines).manifest.engines) == ["encoder", "static_step"]
    pixels = _pixels(0)
    with EdgeCaptioner(engines, backend="tensorrt") as cap:
        assert cap._backend.static_step
        tok = cap.manifest.tokenizer
        for grid in TRT_GRID:
            opts = DecodeOptions(max_new_tokens=10).replace(**grid)
            want = reference(model, pixels, opts, len(tok.prompt_ids), set(tok.eos_token_ids))
            assert token_ids(cap, pixels, **opts.to_dict()) == want, grid


@pytest.mark.slow
def test_git_base_shapes_match_generate(tmp_path):
    """GIT-base shapes (CLIP ViT-B/16 at 224: 197 image tokens; 6 text layers, 768 wide, 30,522 tokens),
    random weights, through the same export and loop (about 10 minutes on a busy 2-core VM)."""
    from edge_caption.export import export
    from edge_caption.export.testing import git_base, tiny_bert_tokenizer, tiny_image_processor

    model = git_base()
    bundle = export(model, tmp_path / "git-base.ecap", tokenizer=tiny_bert_tokenizer(30522),
                    processor=tiny_image_processor("clip", size=224), progress=False)
    pixels = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    with EdgeCaptioner(bundle, backend="onnxruntime") as cap:
        tok = cap.manifest.tokenizer
        assert list(tok.prompt_ids) == [101] and list(tok.eos_token_ids) == [102]
        for grid in (dict(num_beams=1), dict(num_beams=3), dict(num_beams=3, no_repeat_ngram_size=2)):
            opts = DecodeOptions(max_new_tokens=16).replace(**grid)
            want = reference(model, pixels, opts, 1, {102})
            assert [c.token_ids for c in cap.caption_pixels(pixels, **opts.to_dict())] == want, grid
