"""BERT-style decoders as a cross-attending step: BertLMHeadModel (is_decoder + add_cross_attention)
and BLIP's text decoder, which has the same layer layout without token-type embeddings.

Mirrors transformers' BertLayer: post-LayerNorm residual blocks (`attention.output` and `output`
apply dense + LayerNorm(x + residual)), causal self-attention, cross-attention on the image,
the intermediate activation from the config, and the LM head's transform + tied decoder + bias.
"""
from __future__ import annotations

import torch

from edge_caption.errors import ExportError

from ..attention import cross_attend, merge_heads, split_heads
from .base import StepBase


def check(decoder) -> None:
    cfg = decoder.config
    if not (getattr(cfg, "is_decoder", False) and hasattr(decoder.bert.encoder.layer[0], "crossattention")):
        raise ExportError(f"{type(decoder).__name__} needs is_decoder=True and add_cross_attention=True to caption")
    kind = getattr(cfg, "position_embedding_type", "absolute")
    if kind not in (None, "absolute"):
        raise ExportError(f"{type(decoder).__name__} with position_embedding_type={kind!r} is not supported "
                          "(only 'absolute')")


def geometry(decoder) -> tuple[int, int, int]:
    cfg = decoder.config
    return cfg.num_hidden_layers, cfg.num_attention_heads, cfg.hidden_size // cfg.num_attention_heads


class BertCrossKV(torch.nn.Module):
    def __init__(self, decoder):
        super().__init__()
        self.layers = decoder.bert.encoder.layer
        self.head_dim = geometry(decoder)[2]

    def forward(self, hidden: torch.Tensor):
        pairs = []
        for layer in self.layers:
            att = layer.crossattention.self
            pairs.append((split_heads(att.key(hidden), self.head_dim), split_heads(att.value(hidden), self.head_dim)))
        return pairs


class BertStep(StepBase):
    def __init__(self, decoder):
        super().__init__()
        self.bert = decoder.bert
        self.cls = decoder.cls
        self.num_layers, _, self.head_dim = geometry(decoder)
        self.scale = self.head_dim ** -0.5

    def embed(self, input_ids, positions):
        emb = self.bert.embeddings
        hidden = emb.word_embeddings(input_ids)
        # generate() never passes token_type_ids, so BERT adds the type-0 embedding (its zero buffer)
        if hasattr(emb, "token_type_embeddings"):
            hidden = hidden + emb.token_type_embeddings.weight[0]
        hidden = hidden + emb.position_embeddings(positions).unsqueeze(0)
        return emb.LayerNorm(hidden)

    def decode(self, input_ids, positions, memory, past, cache):
        hidden = self.embed(input_ids, positions)
        present = []
        for layer, (ck, cv), kv in zip(self.bert.encoder.layer, memory, past):
            att = layer.attention.self
            q, k, v = (split_heads(p(hidden), self.head_dim) for p in (att.query, att.key, att.value))
            a, kv = cache.attend(q, k, v, kv, self.scale)
            present.append(kv)
            hidden = layer.attention.output(merge_heads(a), hidden)

            cross = layer.crossattention
            q = split_heads(cross.self.query(hidden), self.head_dim)
            hidden = cross.output(merge_heads(cross_attend(q, ck, cv, self.scale)), hidden)

            hidden = layer.output(layer.intermediate(hidden), hidden)
        return hidden, present

    def lm_logits(self, hidden):
        return self.cls(hidden)

