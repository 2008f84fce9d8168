"""The attention arithmetic every decoder step shares: the Hugging Face adapters', our reference
families' and the static step's.

The step graphs do not reuse Hugging Face's attention modules: those take cache objects and masks,
while our contract needs flat past/present tensors and cross-attention K/V shared by all beams of an
image. It sits below both export/adapters/ and export/families/, which each use it.
"""
from __future__ import annotations

import torch


def split_heads(x: torch.Tensor, head_dim: int) -> torch.Tensor:
    """[N, L, h*d] -> [N, h, L, d]"""
    return x.reshape(x.shape[0], x.shape[1], -1, head_dim).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[N, h, L, d] -> [N, L, h*d]"""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], -1)


def self_attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """Causal attention of L new queries over T cached + L new keys (k, v already concatenated)."""
    new, total = q.shape[2], k.shape[2]
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale
    # query i sits at absolute position total - new + i and may see keys up to that position
    query_pos = torch.arange(new, device=q.device).unsqueeze(1) + (total - new)
    allowed = torch.arange(total, device=q.device).unsqueeze(0) <= query_pos
    scores = scores.masked_fill(~allowed, float("-inf"))
    return torch.matmul(torch.softmax(scores, dim=-1), v)


def cross_attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """Attention of q [N,h,L,d] over per-image k/v [B,h,S,d] without copying k/v per beam.

    Rows b*nb .. b*nb+nb-1 of q belong to image b; the beams become extra query positions, which is
    exact because cross-attention has no mask."""
    shape = q.shape
    _, h, new, d = shape
    b = k.shape[0]
    # -1 (not N // B) keeps the exported graph free of a symbolic division guard on N and B
    q = q.reshape(b, -1, h, new, d).transpose(1, 2).reshape(b, h, -1, d)
    out = torch.matmul(torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * scale, dim=-1), v)
    return out.reshape(b, h, -1, new, d).transpose(1, 2).reshape(shape)


class GrowingCache:
    """The dynamic step's self-attention cache: past [N,h,T,d] and the L new rows concatenated, so the
    present grows by L each step (what ONNX Runtime runs best on a CPU)."""

    def attend(self, q, k_new, v_new, past, scale: float):
        """Causal attention of the new queries; returns (attended [N,h,L,d], present (k, v))."""
        if past is not None:
            k_new, v_new = torch.cat([past[0], k_new], dim=2), torch.cat([past[1], v_new], dim=2)
        return self_attend(q, k_new, v_new, scale), (k_new, v_new)


class SlotCache:
    """The static step's cache (export/static_step.py): max-length [N,h,C,d] buffers, the one new
    token's K/V written at `position`, keys after it masked. Shapes never change, so TensorRT runs the
    step from a CUDA graph; positions past the current one hold zeros or stale rows, never attended."""

    def __init__(self, position: torch.Tensor, length):
        slots = torch.arange(length, device=position.device)
        self.write = (slots == position).reshape(1, 1, -1, 1)        # [1,1,C,1]
        self.visible = (slots <= position).reshape(1, 1, 1, -1)      # [1,1,1,C]

    def attend(self, q, k_new, v_new, past, scale: float):
        k = torch.where(self.write, k_new, past[0])
        v = torch.where(self.write, v_new, past[1])
        scores = (torch.matmul(q, k.transpose(-1, -2)) * scale).masked_fill(~self.visible, float("-inf"))
        return torch.matmul(torch.softmax(scores, dim=-1), v), (k, v)


GROWING = GrowingCache()
