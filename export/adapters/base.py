"""The split model every adapter returns, and the step and encoder bases they build on.

The attention arithmetic lives in export/attention.py. Only the HF submodules' weights (Linear,
Conv1D, LayerNorm, embeddings, MLPs, LM heads) are called, so the numbers match the original model.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from edge_caption.errors import ExportError
from edge_caption.manifest import Preprocess, StateSpec

from ..attention import GROWING

GENERATION_KEYS = ("num_beams", "max_new_tokens", "min_new_tokens", "length_penalty", "early_stopping",
                   "no_repeat_ngram_size", "repetition_penalty", "num_return_sequences")


@dataclass
class SplitModel:
    family: str                     # "vision-encoder-decoder" | "blip" | "florence2" | ours
    name: str
    encoder: torch.nn.Module        # forward(pixel_values) -> tuple of memory tensors, in memory_names order
    step: torch.nn.Module           # forward(input_ids, *memory, *past) -> (logits, *present)
    memory_names: list[str]
    state: list[StateSpec]
    vocab_size: int
    image_size: tuple[int, int]
    prompt_ids: list[int]
    eos_token_ids: list[int]
    pad_token_id: int | None
    generation_defaults: dict[str, Any] = field(default_factory=dict)
    hf_model: torch.nn.Module | None = None
    # what the Hugging Face families leave at these defaults and our reference families set
    step_memory_names: list[str] | None = None      # memory the step reads; None: all of it
    memory_shapes: list[tuple] | None = None        # symbolic shapes; None: [B, heads, S, head_dim] K/V
    step_extras: list[str] = field(default_factory=list)    # extra step outputs, e.g. "attention"
    tokens_per_step: int | None = None              # None: a step takes any number of tokens
    attention_grid: tuple[int, int] | None = None   # (h, w) of the attention weights' positions
    recompute: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None   # no-cache oracle
    preprocess: Preprocess | None = None            # when the model itself knows it
    tokenizer: Any = None                           # when the model carries its own tokenizer
    prompt: str | None = None                       # the prompt text baked in (a BLIP prefix, a Florence-2 task)

    @property
    def num_layers(self) -> int:
        return len(self.memory_names) // 2

    @property
    def step_memory(self) -> list[str]:
        return list(self.memory_names if self.step_memory_names is None else self.step_memory_names)

    @property
    def past_names(self) -> list[str]:
        return [s.input for s in self.state]

    @property
    def present_names(self) -> list[str]:
        return [s.output for s in self.state]


def memory_names(num_layers: int) -> list[str]:
    return [f"cross_{kind}_{i}" for i in range(num_layers) for kind in ("key", "value")]


def self_attention_state(num_layers: int, num_heads: int, head_dim: int) -> list[StateSpec]:
    return [
        StateSpec(input=f"past_{kind}_{i}", output=f"present_{kind}_{i}", shape=("N", num_heads, "T", head_dim),
                  dtype="float32", reorder=True, init="empty", grow_axis=2)
        for i in range(num_layers) for kind in ("key", "value")
    ]


class StepBase(torch.nn.Module):
    """forward(input_ids, *memory, *past) -> (logits of the last new position, *present).

    `run` is the same step with the positions and the cache given: the static step calls it with a
    SlotCache, so a family's decode is written once for both graphs."""

    num_layers: int

    def forward(self, input_ids: torch.Tensor, *tensors: torch.Tensor):
        n = self.num_layers
        memory = [(tensors[2 * i], tensors[2 * i + 1]) for i in range(n)]
        past = [(tensors[2 * n + 2 * i], tensors[2 * n + 2 * i + 1]) for i in range(n)]
        positions = torch.arange(input_ids.shape[1], device=input_ids.device) + past[0][0].shape[2]
        return self.run(input_ids, positions, memory, past, GROWING)

    def run(self, input_ids, positions, memory, past, cache):
        hidden, present = self.decode(input_ids, positions, memory, past, cache)
        logits = self.lm_logits(hidden[:, -1])
        return (logits, *[t for pair in present for t in pair])

    def decode(self, input_ids, positions, memory, past, cache):  # pragma: no cover - abstract
        raise NotImplementedError

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class MemoryEncoder(torch.nn.Module):
    """Vision encoder, optional projection, then every decoder layer's cross-attention K and V."""

    def __init__(self, vision, cross_kv, projection=None):
        super().__init__()
        self.vision = vision
        self.projection = projection
        self.cross_kv = cross_kv    # module: hidden [B,S,D] -> list of (k, v), each [B,h,S,d]

    def forward(self, pixel_values: torch.Tensor):
        hidden = self.vision(pixel_values=pixel_values)[0]
        if self.projection is not None:
            hidden = self.projection(hidden)
        return tuple(t for pair in self.cross_kv(hidden) for t in pair)


def generation_defaults(gen_config, prompt_len: int) -> dict[str, Any]:
    """HF generation settings that differ from None, with lengths counted in new tokens."""
    out = {k: getattr(gen_config, k, None) for k in GENERATION_KEYS}
    if out["max_new_tokens"] is None:
        # generate() falls back to max_length=20 when neither length is set
        max_length = getattr(gen_config, "max_length", None) or 20
        out["max_new_tokens"] = max(1, max_length - prompt_len)
    # min_length, like max_length, counts the decoder's start tokens
    if out["min_new_tokens"] is None and getattr(gen_config, "min_length", None):
        out["min_new_tokens"] = max(0, gen_config.min_length - prompt_len)
    return {k: v for k, v in out.items() if v is not None}


def as_id_list(value) -> list[int]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [int(v) for v in value]
    if isinstance(value, torch.Tensor):
        return [int(v) for v in value.flatten().tolist()]
    return [int(value)]


def image_size(config) -> tuple[int, int]:
    size = getattr(config, "image_size", None)
    if isinstance(size, int):
        return (size, size)
    if isinstance(size, (list, tuple)) and len(size) == 2:
        return (int(size[0]), int(size[1]))
    raise ExportError(f"cannot tell the input image size from {type(config).__name__}.image_size={size!r}")


def model_name(model) -> str:
    path = getattr(model.config, "_name_or_path", "") or ""
    return path.rstrip("/").split("/")[-1] or model.config.model_type
