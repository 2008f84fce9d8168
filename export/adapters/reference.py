"""Our reference captioners (edge_caption.export.families) -> the model contract.

They are written to the contract already; this wraps their `encode` and `step` as modules the
exporter can trace and hands over what only they know (state, extras, preprocessing, tokenizer).
"""
from __future__ import annotations

import torch

from .base import SplitModel


class _Encode(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values):
        return self.model.encode(pixel_values)


class _Step(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, *tensors):
        return self.model.step(input_ids, *tensors)

    def run(self, input_ids, positions, memory, past, cache):
        """StepBase.run's contract, for families with a KV cache (the static step needs it)."""
        run_step = getattr(self.model, "run_step", None)
        if run_step is None:
            raise NotImplementedError(f"the {self.model.family} family has no static-cache step")
        return run_step(input_ids, positions, memory, past, cache)


def split(model) -> SplitModel:
    from ..families import BOS, EOS, PAD

    return SplitModel(
        family=model.family,
        name=model.name,
        encoder=_Encode(model).eval(),
        step=_Step(model).eval(),
        memory_names=list(model.memory_names),
        state=model.state_specs(),
        vocab_size=model.vocab_size,
        image_size=(model.image_size, model.image_size),
        prompt_ids=[BOS],
        eos_token_ids=[EOS],
        pad_token_id=PAD,
        generation_defaults=model.generation_defaults(),
        step_memory_names=list(model.step_memory_names),
        memory_shapes=model.memory_shapes(),
        step_extras=list(model.step_extras),
        tokens_per_step=model.tokens_per_step,
        attention_grid=model.attention_grid,
        recompute=model.recompute,
        preprocess=model.preprocess(),
        tokenizer=model.tokenizer(),
    )
