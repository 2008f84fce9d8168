"""End to end: exported ONNX bundles decoded by our loop give `generate()`'s token ids, exactly.

transformers is pinned (pyproject: 5.x; tested with 5.23). A mismatch fails: fp32 parity is exact.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from edge_caption import EdgeCaptioner  # noqa: E402
from edge_caption.options import DecodeOptions  # noqa: E402

from edge_caption.export.testing import IMAGE  # noqa: E402

FAMILIES = ["vit_gpt2", "swin_gpt2", "deit_bert", "blip"]
SEEDS = [0, 1]
GRID = [
    dict(num_beams=1),
    dict(num_beams=1, repetition_penalty=1.4, no_repeat_ngram_size=2, min_new_tokens=3),
    dict(num_beams=3),
    dict(num_beams=3, early_stopping=True, length_penalty=0.5),
    dict(num_beams=4, early_stopping="never", length_penalty=1.5, num_return_sequences=2),
    dict(num_beams=2, no_repeat_ngram_size=3, repetition_penalty=1.2, min_new_tokens=2),
]


def reference(model, pixels: np.ndarray, opts: DecodeOptions, prompt_len: int, eos: set[int]):
    """generate()'s ids after the prompt, cut after the first EOS (it pads finished rows), on the model's device."""
    device = next(model.parameters()).device
    out = model.generate(pixel_values=torch.from_numpy(pixels).to(device), do_sample=False, **opts.to_dict())
    rows = []
    for seq in out.tolist():
        gen = seq[prompt_len:]
        cut = next((i for i, t in enumerate(gen) if t in eos), None)
        rows.append(tuple(gen if cut is None else gen[: cut + 1]))
    return rows


@pytest.mark.parametrize("family,seed", list(itertools.product(FAMILIES, SEEDS)))
def test_bundle_matches_generate(exported, family, seed):
    model, bundle = exported(family, seed)
    pixels = np.random.default_rng(100 + seed).standard_normal((3, 3, IMAGE, IMAGE)).astype(np.float32)
    with EdgeCaptioner(bundle, backend="onnxruntime") as cap:
        grid_matches_generate(cap, model, pixels, f"{family} seed {seed}")


def grid_matches_generate(cap: EdgeCaptioner, model, pixels: np.ndarray, label: str) -> list[tuple[int, ...]]:
    """Caption `pixels` with every GRID option set, assert each gives generate()'s ids; all the ids returned."""
    tok = cap.manifest.tokenizer
    every = []
    for grid in GRID:
        opts = DecodeOptions(max_new_tokens=10).replace(**grid)
        ref = reference(model, pixels, opts, len(tok.prompt_ids), set(tok.eos_token_ids))
        got = []
        for caption in cap.caption_pixels(pixels, **opts.to_dict()):
            got += [caption.token_ids] + [alt.token_ids for alt in caption.alternatives]
        assert got == ref, f"{label} {grid}"
        every += got
    return every
