"""GPT-2 (GPT2LMHeadModel with add_cross_attention) as a cross-attending decoder step.

Mirrors transformers' GPT2Block: pre-LayerNorm blocks, Conv1D projections, `attn.scaling` (which
already folds in scale_attn_weights and scale_attn_by_inverse_layer_idx; reorder_and_upcast_attn
only changes precision, not the math in fp32), the MLP with the config's activation, ln_f, lm_head.
"""
from __future__ import annotations

import torch

from edge_caption.errors import ExportError

from ..attention import cross_attend, merge_heads, split_heads
from .base import StepBase


def check(decoder) -> None:
    if not getattr(decoder.config, "add_cross_attention", False):
        raise ExportError("the GPT-2 decoder has no cross-attention (config.add_cross_attention is False)")


def geometry(decoder) -> tuple[int, int, int]:
    cfg = decoder.config
    return cfg.n_layer, cfg.n_head, cfg.n_embd // cfg.n_head


class GPT2CrossKV(torch.nn.Module):
    def __init__(self, decoder):
        super().__init__()
        self.blocks = decoder.transformer.h
        self.embed = decoder.config.n_embd
        self.head_dim = self.embed // decoder.config.n_head

    def forward(self, hidden: torch.Tensor):
        pairs = []
        for block in self.blocks:
            k, v = block.crossattention.c_attn(hidden).split(self.embed, dim=2)
            pairs.append((split_heads(k, self.head_dim), split_heads(v, self.head_dim)))
        return pairs


class GPT2Step(StepBase):
    def __init__(self, decoder):
        super().__init__()
        self.transformer = decoder.transformer
        self.lm_head = decoder.lm_head
        self.num_layers, _, self.head_dim = geometry(decoder)
        self.embed = decoder.config.n_embd

    def decode(self, input_ids, positions, memory, past, cache):
        t = self.transformer
        hidden = t.wte(input_ids) + t.wpe(positions).unsqueeze(0)
        present = []
        for block, (ck, cv), kv in zip(t.h, memory, past):
            x = block.ln_1(hidden)
            q, k, v = (split_heads(p, self.head_dim) for p in block.attn.c_attn(x).split(self.embed, dim=2))
            a, kv = cache.attend(q, k, v, kv, block.attn.scaling)
            present.append(kv)
            hidden = hidden + block.attn.c_proj(merge_heads(a))

            x = block.ln_cross_attn(hidden)
            q = split_heads(block.crossattention.q_attn(x), self.head_dim)
            a = cross_attend(q, ck, cv, block.crossattention.scaling)
            hidden = hidden + block.crossattention.c_proj(merge_heads(a))

            hidden = hidden + block.mlp(block.ln_2(hidden))
        return t.ln_f(hidden), present

    def lm_logits(self, hidden):
        return self.lm_head(hidden)
