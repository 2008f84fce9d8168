"""The decoding loop alone against `generate()`: the step is the PyTorch model itself (full recompute).

This isolates the search (processors, beam bookkeeping, stopping) from export: a mismatch here is a
decoding bug, not an ONNX one. The end-to-end bundle parity lives in test_parity.py.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from edge_caption.decoding import decode  # noqa: E402
from edge_caption.manifest import GraphSpec, Manifest, Preprocess, StateSpec, TokenizerSpec  # noqa: E402
from edge_caption.options import DecodeOptions  # noqa: E402

from edge_caption.export.testing import IMAGE, tiny_vit_gpt2  # noqa: E402


class RecomputeBackend:
    """A backend whose step runs the Hugging Face model on the whole history (no cache)."""

    name = "torch-recompute"

    def __init__(self, model):
        self.model = model

    def encode(self, pixel_values):
        with torch.no_grad():
            hidden = self.model.encoder(pixel_values=torch.from_numpy(pixel_values)).last_hidden_state
        return {"encoder_hidden_states": hidden.numpy()}

    def step(self, input_ids, memory, state):
        history = np.concatenate([state["history"], input_ids], axis=1)
        hidden = torch.from_numpy(memory["encoder_hidden_states"])
        hidden = hidden.repeat_interleave(history.shape[0] // hidden.shape[0], dim=0)
        from transformers.modeling_outputs import BaseModelOutput

        with torch.no_grad():
            logits = self.model(encoder_outputs=BaseModelOutput(last_hidden_state=hidden),
                                decoder_input_ids=torch.from_numpy(history)).logits[:, -1]
        return logits.numpy(), {"history": history}, {}


def _manifest(model) -> Manifest:
    gc = model.generation_config
    return Manifest(
        name="recompute", version="0", family="test", preprocess=Preprocess(size=(IMAGE, IMAGE)),
        tokenizer=TokenizerSpec(file="-", prompt_ids=(gc.decoder_start_token_id,), eos_token_ids=(gc.eos_token_id,)),
        encoder=GraphSpec("-", ("pixel_values",), ("encoder_hidden_states",)),
        decoder_step=GraphSpec("-", ("input_ids", "encoder_hidden_states", "history"), ("logits", "history_out")),
        memory=("encoder_hidden_states",),
        state=(StateSpec("history", "history_out", ("N", "T"), dtype="int64", grow_axis=1),),
        vocab_size=model.decoder.config.vocab_size,
    )


def _hf(model, pixels, opts: DecodeOptions):
    out = model.generate(pixel_values=torch.from_numpy(pixels), do_sample=False, output_scores=True,
                         return_dict_in_generate=True, **opts.to_dict())
    return out


GRID = [
    dict(num_beams=1),
    dict(num_beams=1, repetition_penalty=1.3, no_repeat_ngram_size=2, min_new_tokens=4),
    dict(num_beams=3),
    dict(num_beams=3, early_stopping=True),
    dict(num_beams=3, early_stopping="never", length_penalty=2.0),
    dict(num_beams=4, length_penalty=-0.5, num_return_sequences=3),
    dict(num_beams=2, no_repeat_ngram_size=2, repetition_penalty=1.5),
    dict(num_beams=3, min_new_tokens=5, early_stopping=True, length_penalty=0.0),
]


@pytest.mark.parametrize("seed,opts", list(itertools.product([0, 1, 2], GRID)))
def test_loop_matches_generate(seed, opts):
    model = tiny_vit_gpt2(seed)
    opts = DecodeOptions(max_new_tokens=10).replace(**opts)
    pixels = np.random.default_rng(seed).standard_normal((3, 3, IMAGE, IMAGE)).astype(np.float32)
    backend = RecomputeBackend(model)
    ours = decode(backend, _manifest(model), backend.encode(pixels), opts)
    ref = _hf(model, pixels, opts)
    eos = model.generation_config.eos_token_id
    k = opts.num_return_sequences
    for row, seq in enumerate(ref.sequences.tolist()):
        gen = seq[1:]
        if eos in gen:      # HF pads finished sequences (pad may equal EOS): cut after the first EOS
            gen = gen[: gen.index(eos) + 1]
        image, j = divmod(row, k)
        assert ours[image][j][0] == tuple(gen), f"image {image} hypothesis {j}"
        if opts.num_beams > 1:
            assert ours[image][j][1] == pytest.approx(float(ref.sequences_scores[row]), rel=1e-4, abs=1e-4)
