"""GitForCausalLM (microsoft/git-base-coco, git-large-coco): a decoder-only captioner over image tokens.

GIT has no cross-attention. Its one stack of BERT-style layers runs over [image tokens ; text
tokens]: the CLIP vision tower's tokens, projected (Linear + LayerNorm), are a prefix of P tokens
(P = (image_size / patch_size)**2 + 1) in front of the text. `GitModel.forward` in transformers 5.x
builds the mask with `create_causal_mask(..., block_sequence_ids=group_ids)`, group 0 for image
tokens and -1 for text: a query sees a key when the key is not later (causal) *or* both are image
tokens (the blockwise overlay). So image tokens see all image tokens and never a text token (text
always comes later, and its group is -1), while text sees every image token and the text up to
itself. Hence, at every layer, the image tokens' hidden states depend on the image alone.

How this fits the model contract (DESIGN.md):
- **encoder** `pixel_values -> memory`: the vision tower, the projection, and the prefix run through
  every decoder layer (bidirectional attention among image tokens, the only attention they have);
  memory is each layer's prefix K and V, `prefix_key_i` / `prefix_value_i` [B, heads, P, head_dim].
  This is what generate()'s cache holds for the image after its first forward, computed once per
  image; the last layer's prefix outputs feed nothing and are not computed.
- **decoder step** `(input_ids, *memory, *past) -> (logits, *present)`: text embeddings (word +
  position, LayerNorm) at text positions 0, 1, ... (generate() gives GIT `position_ids` from the
  text's attention mask, so the image tokens take no positions), then per layer one softmax over
  [prefix keys ; text cache + new keys] with the causal mask on the text part
  (attention.prefix_attend). The state is the text's own self-attention K/V per layer, reordered by
  beams as for every other family; the prefix K/V is memory: one per image, shared by the image's
  beams (the beams become extra query rows, as in cross_attend), never copied or reordered, exactly
  like cross-attention K/V. generate() repeats the image per beam; its rows are identical, so sharing
  them is exact.
- **TensorRT-shaped step** (static_step.py): the same `run()` with a SlotCache: the text cache is
  max-length [N, heads, C, head_dim] written at `position` (the text position, which is also the
  position embedding's index), while the prefix K/V is a fixed-size per-image input. Nothing in it
  depends on P at run time beyond the memory's shape, so the step stays static per engine.

generate() starts from [bos] (GIT's [CLS], 101 in the COCO checkpoints) and stops on eos ([SEP]).
A prompt (GIT's visual question answering, or a caption prefix) is [CLS] + the prompt's tokens
without special tokens, as GIT's model card feeds it to generate(); its ids begin the returned ids.
"""
from __future__ import annotations

import torch

from edge_caption.errors import ExportError

from ..attention import merge_heads, prefix_attend, split_heads
from .base import (MemoryEncoder, SplitModel, StepBase, as_id_list, generation_defaults, image_size, model_name,
                   self_attention_state)

FAMILY = "git"


def check(model) -> None:
    cfg = model.config
    if cfg.num_image_with_embedding is not None:
        raise ExportError(f"GIT with num_image_with_embedding={cfg.num_image_with_embedding} captions videos "
                          "(several frames per caption); only single-image GIT models (e.g. git-base-coco) "
                          "are supported")


def geometry(model) -> tuple[int, int, int]:
    cfg = model.config
    return cfg.num_hidden_layers, cfg.num_attention_heads, cfg.hidden_size // cfg.num_attention_heads


def memory_names(num_layers: int) -> list[str]:
    return [f"prefix_{kind}_{i}" for i in range(num_layers) for kind in ("key", "value")]


class GitPrefixKV(torch.nn.Module):
    """Projected image tokens [B,P,D] -> every layer's prefix (k, v), each [B,h,P,d]."""

    def __init__(self, model):
        super().__init__()
        self.layers = model.git.encoder.layer
        self.head_dim = geometry(model)[2]
        self.scale = self.head_dim ** -0.5

    def forward(self, hidden: torch.Tensor):
        pairs = []
        for i, layer in enumerate(self.layers):
            att = layer.attention.self
            k, v = split_heads(att.key(hidden), self.head_dim), split_heads(att.value(hidden), self.head_dim)
            pairs.append((k, v))
            if i == len(self.layers) - 1:
                break           # the last layer's image outputs feed nothing the text reads
            q = split_heads(att.query(hidden), self.head_dim)
            # image tokens attend to image tokens only, all of them (GIT's blockwise mask)
            a = torch.matmul(torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * self.scale, dim=-1), v)
            hidden = layer.attention.output(merge_heads(a), hidden)
            hidden = layer.output(layer.intermediate(hidden), hidden)
        return pairs


class GitStep(StepBase):
    """forward(input_ids, *prefix K/V, *past) -> (logits, *present); see the module docstring.

    StepBase gives the new tokens positions T, T+1, ... with T the text cache's length: GIT's text
    positions count text only (generate() derives them from the text's attention mask)."""

    def __init__(self, model):
        super().__init__()
        self.embeddings = model.git.embeddings
        self.layers = model.git.encoder.layer
        self.head = model.output
        self.num_layers, _, self.head_dim = geometry(model)
        self.scale = self.head_dim ** -0.5

    def decode(self, input_ids, positions, memory, past, cache):
        emb = self.embeddings
        hidden = emb.LayerNorm(emb.word_embeddings(input_ids) + emb.position_embeddings(positions).unsqueeze(0))
        present = []
        for layer, prefix, kv in zip(self.layers, memory, past):
            att = layer.attention.self
            q, k, v = (split_heads(p(hidden), self.head_dim) for p in (att.query, att.key, att.value))
            a, kv = prefix_attend(cache, q, k, v, kv, prefix, self.scale)
            present.append(kv)
            hidden = layer.attention.output(merge_heads(a), hidden)
            hidden = layer.output(layer.intermediate(hidden), hidden)
        return hidden, present

    def lm_logits(self, hidden):
        return self.head(hidden)


def prompt_ids(model, prompt=None) -> list[int]:
    """[bos] (GIT's [CLS]), then the prompt's token ids (tokenized without special tokens)."""
    bos = model.generation_config.bos_token_id
    bos = model.config.bos_token_id if bos is None else bos
    if bos is None:
        raise ExportError("the GIT model has no bos_token_id, which its generate() starts from; set "
                          "model.generation_config.bos_token_id (101, [CLS], in the COCO checkpoints)")
    if prompt is None:
        return [int(bos)]
    if not isinstance(prompt, (list, tuple)):
        raise ExportError("a GIT prompt must be given as token ids without special tokens "
                          "(tokenizer(prompt, add_special_tokens=False).input_ids)")
    return [int(bos)] + [int(i) for i in prompt]


def split(model, prompt=None) -> SplitModel:
    check(model)
    layers, heads, head_dim = geometry(model)
    ids = prompt_ids(model, prompt)
    gen = model.generation_config
    eos = as_id_list(gen.eos_token_id if gen.eos_token_id is not None else model.config.eos_token_id)
    if not eos:
        raise ExportError("the GIT model has no eos_token_id; set model.generation_config.eos_token_id "
                          "(102, [SEP], in the COCO checkpoints) before exporting")
    pad = gen.pad_token_id if gen.pad_token_id is not None else model.config.pad_token_id

    def recompute(pixels: torch.Tensor, sequence: torch.Tensor) -> torch.Tensor:
        # no cache, no position_ids: the text positions are 0.. as in generate()
        return model(input_ids=sequence, pixel_values=pixels, use_cache=False).logits[:, -1]

    return SplitModel(
        family=FAMILY,
        name=model_name(model),
        encoder=MemoryEncoder(model.git.image_encoder, GitPrefixKV(model), model.git.visual_projection).eval(),
        step=GitStep(model).eval(),
        memory_names=memory_names(layers),
        state=self_attention_state(layers, heads, head_dim),
        vocab_size=model.config.vocab_size,
        image_size=image_size(model.config.vision_config),
        prompt_ids=ids,
        eos_token_ids=eos,
        pad_token_id=None if pad is None else int(pad),
        generation_defaults=generation_defaults(gen, len(ids)),
        hf_model=model,
        recompute=recompute,
    )
