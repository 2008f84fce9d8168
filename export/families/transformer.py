"""CNN grid + Transformer decoder with a KV cache (the "CNN/ViT + Transformer" family).

Pre-norm decoder layers: causal self-attention over the cache, cross-attention over the grid,
an MLP. The encoder adds a 2-D position embedding to the grid, runs one self-attention layer over
it (so "left of" and "three" can be read off the whole image), and precomputes every decoder
layer's cross-attention K/V once per image: the same memory layout as our GPT-2 export.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from edge_caption.manifest import StateSpec

from ..attention import GROWING, cross_attend, merge_heads, split_heads
from .base import ReferenceCaptioner
from .cnn import Backbone


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp: int, dropout: float, cross: bool):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        if cross:
            self.norm2 = nn.LayerNorm(dim)
            self.cross_q = nn.Linear(dim, dim)
            self.cross_kv = nn.Linear(dim, 2 * dim)
            self.cross_proj = nn.Linear(dim, dim)
        self.norm3 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim))
        self.dropout = nn.Dropout(dropout)

    def cross_memory(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.cross_kv(memory).chunk(2, dim=-1)
        return split_heads(k, self.head_dim), split_heads(v, self.head_dim)

    def forward(self, x, past=None, cross=None, causal=True, cache=GROWING):
        scale = 1.0 / math.sqrt(self.head_dim)
        q, k, v = (split_heads(t, self.head_dim) for t in self.qkv(self.norm1(x)).chunk(3, dim=-1))
        if causal:
            attended, (k, v) = cache.attend(q, k, v, past, scale)
        else:
            attended = torch.matmul(torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * scale, dim=-1), v)
        x = x + self.dropout(self.proj(merge_heads(attended)))
        if cross is not None:
            q = split_heads(self.cross_q(self.norm2(x)), self.head_dim)
            x = x + self.dropout(self.cross_proj(merge_heads(cross_attend(q, cross[0], cross[1], scale))))
        x = x + self.dropout(self.mlp(self.norm3(x)))
        return x, (k, v)


class CnnTransformer(ReferenceCaptioner):
    family = "cnn-transformer"
    tokens_per_step = None

    def __init__(self, config):
        super().__init__(config)
        channels, dim = config.get("channels", 128), config.get("dim", 192)
        heads, layers, mlp = config.get("heads", 4), config.get("layers", 3), config.get("mlp", 512)
        dropout = config.get("dropout", 0.1)
        self.max_positions = config.get("max_positions", 32)
        self.cnn = Backbone(channels)
        self.grid_in = nn.Linear(channels, dim)
        self.grid_pos = nn.Parameter(torch.zeros(1, (self.image_size // 16) ** 2, dim))
        self.grid_block = _Block(dim, heads, mlp, dropout, cross=False)
        self.grid_norm = nn.LayerNorm(dim)
        self.embed = nn.Embedding(self.vocab_size, dim)
        self.positions = nn.Embedding(self.max_positions, dim)
        self.blocks = nn.ModuleList(_Block(dim, heads, mlp, dropout, cross=True) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, self.vocab_size)
        self.dropout = nn.Dropout(dropout)
        self.memory_names = tuple(f"cross_{kind}_{i}" for i in range(layers) for kind in ("key", "value"))
        self.step_memory_names = self.memory_names
        self.heads, self.head_dim = heads, dim // heads

    def state_specs(self):
        return [StateSpec(input=f"past_{kind}_{i}", output=f"present_{kind}_{i}",
                          shape=("N", self.heads, "T", self.head_dim), dtype="float32", reorder=True,
                          init="empty", grow_axis=2)
                for i in range(len(self.blocks)) for kind in ("key", "value")]

    def memory_shapes(self):
        return [("B", self.heads, "S", self.head_dim)] * len(self.memory_names)

    def encode(self, pixels):
        grid = self.cnn(pixels).flatten(2).transpose(1, 2)
        memory, _ = self.grid_block(self.grid_in(grid) + self.grid_pos, causal=False)
        memory = self.grid_norm(memory)
        return tuple(t for block in self.blocks for t in block.cross_memory(memory))

    def _decode(self, input_ids, cross, past, positions=None, cache=GROWING):
        if positions is None:
            start = past[0][0].shape[2] if past else 0
            positions = torch.arange(input_ids.shape[1], device=input_ids.device) + start
        x = self.dropout(self.embed(input_ids) + self.positions(positions))
        present = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, past[i] if past else None, cross[i], cache=cache)
            present.append(kv)
        return self.out(self.norm(x)), present

    def step(self, input_ids, *tensors):
        n = len(self.blocks)
        cross = [(tensors[2 * i], tensors[2 * i + 1]) for i in range(n)]
        past = [(tensors[2 * n + 2 * i], tensors[2 * n + 2 * i + 1]) for i in range(n)]
        return self.run_step(input_ids, None, cross, past, GROWING)

    def run_step(self, input_ids, positions, cross, past, cache):
        """The step with positions and cache given (StepBase.run's contract, for the static step)."""
        logits, present = self._decode(input_ids, cross, past, positions, cache)
        return (logits[:, -1], *[t for pair in present for t in pair])

    def forward_train(self, pixels, input_ids):
        memory = self.encode(pixels)
        cross = [(memory[2 * i], memory[2 * i + 1]) for i in range(len(self.blocks))]
        return self._decode(input_ids, cross, None)[0]
