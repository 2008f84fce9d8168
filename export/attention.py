"""The attention arithmetic every decoder step shares: the Hugging Face adapters', our reference
families' and the static step's.

The step graphs do not reuse Hugging Face's attention modules: those take cache objects and masks,
while our contract needs flat past/present tensors and cross-attention K/V shared by all beams of an
image (and GIT's image-prefix K/V, shared the same way: prefix_attend). It sits below both
export/adapters/ and export/families/, which each use it.
"""
from __future__ import annotations

import torch


def split_heads(x: torch.Tensor, head_dim: int) -> torch.Tensor:
    """[N, L, h*d] -> [N, h, L, d]"""
    return x.reshape(x.shape[0], x.shape[1], -1, head_dim).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[N, h, L, d] -> [N, L, h*d]"""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], -1)


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
        scores, (k, v) = self.scores(q, k_new, v_new, past, scale)
        return torch.matmul(torch.softmax(scores, dim=-1), v), (k, v)

    def scores(self, q, k_new, v_new, past, scale: float):
        """The causal scores of the new queries over the grown cache, before the softmax; returns
        (scores [N,h,L,T+L] with -inf where a key is later than its query, present (k, v))."""
        if past is not None:
            k_new, v_new = torch.cat([past[0], k_new], dim=2), torch.cat([past[1], v_new], dim=2)
        new, total = q.shape[2], k_new.shape[2]
        query_pos = torch.arange(new, device=q.device).unsqueeze(1) + (total - new)
        allowed = torch.arange(total, device=q.device).unsqueeze(0) <= query_pos
        return (torch.matmul(q, k_new.transpose(-1, -2)) * scale).masked_fill(~allowed, float("-inf")), (k_new, v_new)


class SlotCache:
    """The static step's cache (export/static_step.py): max-length [N,h,C,d] buffers, the one new
    token's K/V written at `position`, keys after it masked. Shapes never change, so TensorRT runs the
    step from a CUDA graph; positions past the current one hold zeros or stale rows, never attended."""

    def __init__(self, position: torch.Tensor, length):
        slots = torch.arange(length, device=position.device)
        self.write = (slots == position).reshape(1, 1, -1, 1)        # [1,1,C,1]
        self.visible = (slots <= position).reshape(1, 1, 1, -1)      # [1,1,1,C]

    def attend(self, q, k_new, v_new, past, scale: float):
        scores, (k, v) = self.scores(q, k_new, v_new, past, scale)
        return torch.matmul(torch.softmax(scores, dim=-1), v), (k, v)

    def scores(self, q, k_new, v_new, past, scale: float):
        """As GrowingCache.scores, over the max-length cache: (scores [N,h,1,C], present (k, v))."""
        k = torch.where(self.write, k_new, past[0])
        v = torch.where(self.write, v_new, past[1])
        return (torch.matmul(q, k.transpose(-1, -2)) * scale).masked_fill(~self.visible, float("-inf")), (k, v)


def _per_image(x: torch.Tensor, b: int) -> torch.Tensor:
    """[N,h,L,X] -> [B,h,nb*L,X]: an image's beams become extra query rows (see cross_attend)."""
    _, h, new, last = x.shape
    return x.reshape(b, -1, h, new, last).transpose(1, 2).reshape(b, h, -1, last)


def _per_row(x: torch.Tensor, new: int) -> torch.Tensor:
    """The inverse of _per_image: [B,h,nb*L,X] -> [N,h,L,X] with L = `new`."""
    b, h, _, last = x.shape
    return x.reshape(b, h, -1, new, last).transpose(1, 2).reshape(-1, h, new, last)


def prefix_attend(cache, q, k_new, v_new, past, prefix, scale: float):
    """Attention of the new queries over a per-image prefix and the causal cache in one softmax: GIT's
    text tokens see every image token and the text up to themselves.

    `prefix` is (k, v), each [B,h,P,d], shared by the beams of an image and never copied per beam;
    `cache` is a GrowingCache or SlotCache, whose own mask covers the text keys. Returns
    (attended [N,h,L,d], present (k, v))."""
    pk, pv = prefix
    b, size = pk.shape[0], pk.shape[2]
    image = torch.matmul(_per_image(q, b), pk.transpose(-1, -2)) * scale          # [B,h,nb*L,P]
    text, present = cache.scores(q, k_new, v_new, past, scale)                   # [N,h,L,T]
    probs = torch.softmax(torch.cat([_per_row(image, q.shape[2]), text], dim=-1), dim=-1)
    from_image = _per_row(torch.matmul(_per_image(probs[..., :size], b), pv), q.shape[2])
    return from_image + torch.matmul(probs[..., size:], present[1]), present


GROWING = GrowingCache()
