"""Florence2ForConditionalGeneration (transformers 5.x), one task per bundle.

Florence-2 is DaViT + a projection + BART. Its processor turns a task token ("<CAPTION>") into a
question ("What does the image describe?") and writes the text as [image token x N, <s>, question,
</s>]; the model scatters the N projected image features over the image tokens and runs BART's
encoder over the whole sequence. The question is fixed by the task, so the encoder graph bakes in
the task's token ids and takes only pixel_values: it runs the vision tower, the projection, BART's
encoder over [image features ; task tokens], and every decoder layer's cross-attention K/V. The
step is BART's decoder (post-LayerNorm, learned positions offset by 2) with its self-attention
cache. Another task needs another bundle.

Ids follow generate(): decoding starts from text decoder_start_token_id (</s>) and stops on the
generation config's eos ids. BART's config turns on `forced_eos_token_id` (EOS forced at the last
position max_new_tokens allows); edge-caption's search has no such processor, so a caption cut at
max_new_tokens ends on the model's own token instead (said at export; identical otherwise).
"""
from __future__ import annotations

import warnings

import torch

from edge_caption.errors import ExportError
from edge_caption.manifest import Preprocess

from ..attention import cross_attend, merge_heads, split_heads
from .base import (SplitModel, StepBase, as_id_list, generation_defaults, memory_names, model_name,
                   self_attention_state)

FAMILY = "florence2"
DEFAULT_TASK = "<CAPTION>"
CAPTION_TASKS = ("<CAPTION>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>")


def task_ids(processor, task: str) -> list[int]:
    """The encoder's text ids for `task`, image placeholders included, exactly as the processor writes them."""
    import numpy as np

    h, w = _processor_size(processor.image_processor)
    try:
        ids = processor(text=task, images=np.zeros((h, w, 3), np.uint8), return_tensors="np")["input_ids"]
    except ValueError as exc:
        raise ExportError(f"Florence-2's processor does not take the prompt {task!r}: {exc}; pass a task token "
                          f"such as {', '.join(CAPTION_TASKS)}") from exc
    return [int(i) for i in ids[0]]


def split(model, processor, prompt: str | None = None) -> SplitModel:
    """Split `model` for the task `prompt` (default "<CAPTION>"), expanded by `processor` (a Florence2Processor)."""
    if processor is None or not hasattr(processor, "image_processor") or not hasattr(processor, "tokenizer"):
        raise ExportError("Florence-2 needs its processor (Florence2Processor: the task's prompt expansion and the "
                          "image processor): pass processor=AutoProcessor.from_pretrained(MODEL_DIR), or export "
                          "from the model directory, which holds it")
    task = DEFAULT_TASK if prompt is None else prompt
    if not isinstance(task, str):
        raise ExportError(f"a Florence-2 prompt is a task token such as {DEFAULT_TASK!r}, got {task!r}")
    ids = task_ids(processor, task)
    image_token, count = int(model.config.image_token_id), int(processor.image_processor.image_seq_length)
    if ids[:count] != [image_token] * count or image_token in ids[count:]:
        raise ExportError(f"the processor's ids for {task!r} do not start with its {count} image tokens "
                          f"(id {image_token}) alone; this layout is not supported")

    text_config = model.config.text_config
    if len(ids) > text_config.max_position_embeddings:
        raise ExportError(f"the task {task!r} makes {len(ids)} encoder tokens, more than the model's "
                          f"{text_config.max_position_embeddings} positions")
    decoder = model.model.language_model.decoder
    layers, heads = text_config.decoder_layers, text_config.decoder_attention_heads
    gen = model.generation_config
    start = gen.decoder_start_token_id if gen.decoder_start_token_id is not None else text_config.decoder_start_token_id
    if start is None:
        raise ExportError("the model has no decoder_start_token_id; set model.generation_config.decoder_start_token_id")
    eos = as_id_list(gen.eos_token_id if gen.eos_token_id is not None else text_config.eos_token_id)
    if not eos:
        raise ExportError("the model has no eos_token_id; set model.generation_config.eos_token_id before exporting")
    if getattr(gen, "forced_bos_token_id", None) is not None:
        raise ExportError("the generation config forces a BOS token (forced_bos_token_id), which edge-caption's "
                          "search does not do; set model.generation_config.forced_bos_token_id = None to export")
    if getattr(gen, "forced_eos_token_id", None) is not None:
        warnings.warn("generate() forces EOS at the last position max_new_tokens allows (forced_eos_token_id); "
                      "the bundle does not, so a caption cut at max_new_tokens ends on the model's own token",
                      UserWarning, stacklevel=3)
    pad = gen.pad_token_id if gen.pad_token_id is not None else text_config.pad_token_id
    prompt_ids = [int(start)]
    encoder_ids = torch.tensor([ids])

    def recompute(pixels, sequence):
        """generate()'s logits without a cache: the whole model on the processor's ids."""
        return model(input_ids=encoder_ids.expand(pixels.shape[0], -1), pixel_values=pixels,
                     decoder_input_ids=sequence, use_cache=False).logits[:, -1]

    return SplitModel(
        family=FAMILY,
        name=model_name(model),
        encoder=Florence2Encoder(model, ids[count:]).eval(),
        step=BartStep(decoder, model.lm_head).eval(),
        memory_names=memory_names(layers),
        state=self_attention_state(layers, heads, text_config.d_model // heads),
        vocab_size=text_config.vocab_size,
        image_size=_processor_size(processor.image_processor),
        prompt_ids=prompt_ids,
        eos_token_ids=eos,
        pad_token_id=None if pad is None else int(pad),
        generation_defaults=generation_defaults(gen, len(prompt_ids)),
        hf_model=model,
        recompute=recompute,
        preprocess=_preprocess(processor.image_processor),
        tokenizer=processor.tokenizer,
        prompt=task,
    )


class BartCrossKV(torch.nn.Module):
    """Every BART decoder layer's cross-attention K and V of the encoder output."""

    def __init__(self, decoder):
        super().__init__()
        self.layers = decoder.layers
        self.head_dim = decoder.config.d_model // decoder.config.decoder_attention_heads

    def forward(self, hidden: torch.Tensor):
        return [(split_heads(layer.encoder_attn.k_proj(hidden), self.head_dim),
                 split_heads(layer.encoder_attn.v_proj(hidden), self.head_dim)) for layer in self.layers]


class Florence2Encoder(torch.nn.Module):
    """pixel_values -> cross K/V: vision tower, projection, BART encoder over [image ; the task's tokens].

    generate() runs BartEncoder on the same embeddings with an all-ones mask (no padding), i.e. none."""

    def __init__(self, model, text_ids: list[int]):
        super().__init__()
        inner = model.model
        self.vision, self.projector = inner.vision_tower, inner.multi_modal_projector
        self.encoder = inner.language_model.encoder
        self.cross_kv = BartCrossKV(inner.language_model.decoder)
        # the task's rows of BART's shared, scaled table, looked up once as generate() looks them up: the
        # graph holds those rows, not the whole vocabulary (157 MB for Florence-2-base)
        with torch.no_grad():
            self.register_buffer("text_embeds", inner.get_input_embeddings()(torch.tensor([text_ids])),
                                 persistent=False)

    def forward(self, pixel_values: torch.Tensor):
        # Florence2Model.get_image_features: the DaViT tower's last stage, then the projector
        image = self.projector(self.vision(pixel_values).last_hidden_state)
        text = self.text_embeds.expand(image.shape[0], -1, -1)
        hidden = bart_encode(self.encoder, torch.cat([image.to(text.dtype), text], dim=1))
        return tuple(t for pair in self.cross_kv(hidden) for t in pair)


def bart_encode(encoder, embeds: torch.Tensor) -> torch.Tensor:
    """BartEncoder.forward without a mask, and with its fp16 overflow clamp made unconditional (the
    same numbers: it only bites where a value is not finite), which torch.export cannot branch on."""
    head_dim = encoder.config.d_model // encoder.config.encoder_attention_heads
    pos = encoder.embed_positions
    positions = torch.arange(embeds.shape[1], device=embeds.device) + pos.offset
    hidden = encoder.layernorm_embedding(embeds + torch.nn.functional.embedding(positions, pos.weight))
    for layer in encoder.layers:
        att = layer.self_attn
        q, k, v = (split_heads(p(hidden), head_dim) for p in (att.q_proj, att.k_proj, att.v_proj))
        hidden = layer.self_attn_layer_norm(hidden + att.out_proj(merge_heads(cross_attend(q, k, v, att.scaling))))
        hidden = layer.final_layer_norm(hidden + layer.fc2(layer.activation_fn(layer.fc1(hidden))))
        if hidden.dtype == torch.float16:
            limit = torch.finfo(torch.float16).max - 1000
            hidden = hidden.clamp(-limit, limit)
    return hidden


class BartStep(StepBase):
    """BART's decoder layers as a step: learned positions (offset 2), layernorm_embedding, post-LN blocks."""

    def __init__(self, decoder, lm_head):
        super().__init__()
        self.decoder, self.lm_head = decoder, lm_head
        self.num_layers = len(decoder.layers)
        self.head_dim = decoder.config.d_model // decoder.config.decoder_attention_heads

    def decode(self, input_ids, positions, memory, past, cache):
        d = self.decoder
        pos = d.embed_positions
        hidden = d.embed_tokens(input_ids) + torch.nn.functional.embedding(positions + pos.offset, pos.weight)
        hidden = d.layernorm_embedding(hidden)
        present = []
        for layer, (ck, cv), kv in zip(d.layers, memory, past):
            att = layer.self_attn
            q, k, v = (split_heads(p(hidden), self.head_dim) for p in (att.q_proj, att.k_proj, att.v_proj))
            a, kv = cache.attend(q, k, v, kv, att.scaling)
            present.append(kv)
            hidden = layer.self_attn_layer_norm(hidden + att.out_proj(merge_heads(a)))

            cross = layer.encoder_attn
            q = split_heads(cross.q_proj(hidden), self.head_dim)
            a = cross_attend(q, ck, cv, cross.scaling)
            hidden = layer.encoder_attn_layer_norm(hidden + cross.out_proj(merge_heads(a)))

            hidden = layer.final_layer_norm(hidden + layer.fc2(layer.activation_fn(layer.fc1(hidden))))
        return hidden, present

    def lm_logits(self, hidden):
        return self.lm_head(hidden)


def load_processor(path):
    """The Florence2Processor saved in a model directory, offline."""
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ExportError(f"no Florence-2 processor in {path} ({exc}); save it there with "
                          "processor.save_pretrained() or pass processor=") from exc


def _processor_size(image_processor) -> tuple[int, int]:
    size = getattr(image_processor, "size", None) or {}
    size = dict(size) if not isinstance(size, int) else {"height": size, "width": size}
    if not (size.get("height") and size.get("width")):
        raise ExportError(f"Florence-2's image processor has size={size!r}; expected height and width")
    return int(size["height"]), int(size["width"])


def _preprocess(image_processor) -> Preprocess:
    from ..preprocessing import preprocess_spec

    return preprocess_spec(image_processor)
