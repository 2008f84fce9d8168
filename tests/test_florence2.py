"""Florence-2 (export/adapters/florence2.py): one task per bundle, and `generate()`'s tokens exactly, on
the parity grid, through every target: the ONNX bundle on ONNX Runtime, the TensorRT-shaped step on
ONNX Runtime, and the torch.export programs with the device loop on CPU tensors.

generate() gets the processor's input_ids (image placeholders, <s>, the task's question, </s>) with
the pixels, as Florence-2 needs; the bundle gets the pixels alone, its encoder holding the task.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from edge_caption import EdgeCaptioner  # noqa: E402
from edge_caption.bundle import Bundle  # noqa: E402
from edge_caption.errors import ExportError, OptionError  # noqa: E402
from edge_caption.export import export  # noqa: E402
from edge_caption.export import testing_florence2 as f2  # noqa: E402
from edge_caption.export.adapters import split_model  # noqa: E402
from edge_caption.export.testing import IMAGE, pixel_values  # noqa: E402
from edge_caption.options import DecodeOptions  # noqa: E402

from .test_parity import GRID, grid_matches_generate, reference  # noqa: E402

# seed 1 also stops on a second id, one its captions emit often (several EOS ids, as generate() allows)
CONFIGS = {"seed0": (0, f2.F2_EOS, ("onnx", "torch")), "seed1-two-eos": (1, [f2.F2_EOS, 185], ("onnx",))}


class WithTask:
    """The model as generate() is called for one task: the processor's ids go in with the pixels."""

    def __init__(self, model, processor, task: str = "<CAPTION>"):
        self.model, self.ids = model, f2.encoder_ids(processor, task)

    def parameters(self):
        return self.model.parameters()

    def generate(self, pixel_values, **kwargs):
        ids = self.ids.expand(pixel_values.shape[0], -1).to(pixel_values.device)
        return self.model.generate(input_ids=ids, pixel_values=pixel_values, **kwargs)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root, made = tmp_path_factory.mktemp("florence2"), {}

    def get(name):
        if name not in made:
            seed, eos, targets = CONFIGS[name]
            model, processor = f2.tiny_florence2(seed, eos_token_id=eos), f2.florence2_processor()
            path = export(model, root / f"{name}.ecap", processor=processor, targets=targets, progress=False)
            made[name] = (WithTask(model, processor), path)
        return made[name]
    return get


def _pixels(seed: int = 100, count: int = 3):
    return np.random.default_rng(seed).standard_normal((count, 3, IMAGE, IMAGE)).astype(np.float32)


@torch.no_grad()
def test_step_matches_full_recompute():
    split = split_model(f2.tiny_florence2(0), processor=f2.florence2_processor())
    b, beams = 2, 3
    n = b * beams
    pixels = pixel_values(b, seed=1)
    memory = split.encoder(pixels)
    assert all(m.shape[0] == b for m in memory), "cross K/V must be per image, not per beam"
    g = torch.Generator().manual_seed(2)
    sequence = torch.cat([torch.tensor([split.prompt_ids] * n), torch.randint(4, 300, (n, 2), generator=g)], 1)
    new, past = sequence, [torch.zeros(n, s.shape[1], 0, s.shape[3]) for s in split.state]
    for _ in range(4):
        logits, *past = split.step(new, *memory, *past)
        ref = split.recompute(pixels.repeat_interleave(beams, 0), sequence)
        torch.testing.assert_close(logits, ref, atol=1e-4, rtol=1e-4)
        new = torch.randint(4, 300, (n, 1), generator=g)
        sequence = torch.cat([sequence, new], 1)


@torch.no_grad()
def test_the_task_is_the_processors_and_the_ids_follow_generate():
    model, processor = f2.tiny_florence2(0, eos_token_id=[f2.F2_EOS, 185]), f2.florence2_processor()
    split = split_model(model, processor=processor)
    assert split.prompt == "<CAPTION>" and split.family == "florence2"
    assert split.prompt_ids == [f2.F2_EOS] and split.eos_token_ids == [f2.F2_EOS, 185]
    assert split.preprocess.size == (IMAGE, IMAGE) and split.preprocess.resize == "bicubic"
    assert split.preprocess.mean == f2.IMAGENET_MEAN
    # the encoder bakes in the processor's expansion of the task: "<CAPTION>" is its question
    ids = f2.encoder_ids(processor)[0].tolist()
    assert ids[:17] == [f2.F2_IMAGE] * 17 and ids[17] == f2.F2_BOS and ids[-1] == f2.F2_EOS
    assert processor.tokenizer.decode(ids[18:-1]) == "What does the image describe?"
    want = model.model.get_input_embeddings()(torch.tensor([ids[17:]]))
    assert torch.equal(split.encoder.text_embeds, want)
    detailed = split_model(model, processor=processor, prompt="<DETAILED_CAPTION>")
    pixels = pixel_values(2)
    # memory holds one row per encoder token: the image's and the task's
    assert split.encoder(pixels)[0].shape[2] == len(ids)
    assert detailed.encoder(pixels)[0].shape[2] == len(f2.encoder_ids(processor, "<DETAILED_CAPTION>")[0]) > len(ids)
    out = model.generate(input_ids=f2.encoder_ids(processor, batch=2), pixel_values=pixels, max_new_tokens=2)
    assert out[:, :1].tolist() == [split.prompt_ids] * 2
    with pytest.raises(ExportError, match="needs its processor"):
        split_model(model)
    with pytest.raises(ExportError, match="does not take the prompt"):
        split_model(model, processor=processor, prompt="<CAPTION> and more")


@pytest.mark.parametrize("name", list(CONFIGS))
def test_bundle_matches_generate(bundles, name):
    model, bundle = bundles(name)
    pixels = _pixels(100 + CONFIGS[name][0])
    with EdgeCaptioner(bundle, backend="onnxruntime") as cap:
        tok = cap.manifest.tokenizer
        assert list(tok.eos_token_ids) == ([f2.F2_EOS] if name == "seed0" else [f2.F2_EOS, 185])
        got = grid_matches_generate(cap, model, pixels, name)
    assert sum(len(ids) < 10 for ids in got), "no caption stopped early: the grid would not exercise stopping"


def test_the_static_step_gives_generate_tokens(bundles):
    from edge_caption.backends.onnxruntime import OnnxRuntimeBackend
    from edge_caption.decoding import decode

    model, bundle = bundles("seed0")
    b = Bundle.open(bundle)
    backend = OnnxRuntimeBackend(b, static_step=True)
    pixels = _pixels()
    memory, tok = backend.encode(pixels), b.manifest.tokenizer
    for grid in GRID:
        opts = DecodeOptions(max_new_tokens=10).replace(**grid)
        want = reference(model, pixels, opts, len(tok.prompt_ids), set(tok.eos_token_ids))
        assert [h.token_ids for per in decode(backend, b.manifest, memory, opts) for h in per] == want, grid


def test_the_torch_programs_give_generate_tokens_on_cpu(bundles):
    from edge_caption.backends.torch_cuda import TorchCudaBackend
    from edge_caption.decoding import decode

    model, bundle = bundles("seed0")
    b = Bundle.open(bundle)
    backend = TorchCudaBackend(b, device="cpu", dtype="float32")
    pixels = _pixels()
    tok = b.manifest.tokenizer
    for grid in GRID:
        opts = DecodeOptions(max_new_tokens=10).replace(**grid)
        want = reference(model, pixels, opts, len(tok.prompt_ids), set(tok.eos_token_ids))
        got = [h.token_ids for per in decode(backend, b.manifest, backend.encode(pixels), opts) for h in per]
        assert got == want, grid


def test_a_bundle_refuses_another_tasks_prompt(bundles):
    _, bundle = bundles("seed0")
    data = json.loads((bundle / "manifest.json").read_text())
    assert data["prompt"] == "<CAPTION>" and data["format_version"] == 3
    pixels = _pixels(count=1)
    with EdgeCaptioner(bundle, backend="onnxruntime") as cap:
        same = cap.caption_pixels(pixels, prompt="<CAPTION>")[0].token_ids
        assert same == cap.caption_pixels(pixels)[0].token_ids
        with pytest.raises(OptionError, match=r"exported for the Florence-2 task '<CAPTION>'.*"
                                              r'edge-caption export --model MODEL_DIR --prompt "<OD>"'):
            cap.caption_pixels(pixels, prompt="<OD>")
        frame = np.zeros((40, 30, 3), np.uint8)
        with pytest.raises(OptionError, match="'<DETAILED_CAPTION>'"):
            cap.caption(frame, prompt="<DETAILED_CAPTION>")
    with pytest.raises(OptionError, match="Florence-2 task '<CAPTION>'"):
        EdgeCaptioner(bundle, backend="onnxruntime", prompt="<MORE_DETAILED_CAPTION>")
    info = subprocess.run([sys.executable, "-m", "edge_caption.cli", "info", str(bundle)], capture_output=True,
                          text=True, timeout=300)
    assert info.returncode == 0, info.stderr
    assert "prompt     <CAPTION> (the task baked in at export" in info.stdout
    cli = [sys.executable, "-m", "edge_caption.cli", "caption", str(bundle), "--sample", "--backend", "onnxruntime"]
    refused = subprocess.run([*cli, "--prompt", "<OD>"], capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "Florence-2 task '<CAPTION>'" in refused.stderr, refused.stderr
    assert subprocess.run([*cli, "--prompt", "<CAPTION>"], capture_output=True, timeout=300).returncode == 0


@pytest.mark.slow
def test_cli_exports_a_model_directory_for_a_task(tmp_path):
    """What a user runs on a checkpoint folder: the model, its processor and tokenizer load offline."""
    model, processor = f2.tiny_florence2(0), f2.florence2_processor()
    model.save_pretrained(tmp_path / "florence2")
    processor.save_pretrained(tmp_path / "florence2")
    out = tmp_path / "detailed.ecap"
    run = subprocess.run([sys.executable, "-m", "edge_caption.cli", "export", "--model", str(tmp_path / "florence2"),
                          "--out", str(out), "--prompt", "<DETAILED_CAPTION>"], capture_output=True, text=True,
                         timeout=1200)
    assert run.returncode == 0, run.stderr[-3000:]
    # the oracle is the checkpoint as saved: the factory's EOS bias on lm_head is not part of Florence-2
    from transformers import Florence2ForConditionalGeneration

    saved = Florence2ForConditionalGeneration.from_pretrained(tmp_path / "florence2").eval()
    saved.generation_config.forced_eos_token_id = None      # not in our search (see the adapter)
    pixels = _pixels(count=2)
    want = reference(WithTask(saved, processor, "<DETAILED_CAPTION>"), pixels, DecodeOptions(max_new_tokens=10),
                     1, {f2.F2_EOS})
    with EdgeCaptioner(out, backend="onnxruntime", prompt="<DETAILED_CAPTION>") as cap:
        assert cap.manifest.prompt == "<DETAILED_CAPTION>"
        assert [c.token_ids for c in cap.caption_pixels(pixels, max_new_tokens=10)] == want
