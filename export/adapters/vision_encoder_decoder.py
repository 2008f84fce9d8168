"""transformers.VisionEncoderDecoderModel: any pixel_values vision encoder + GPT-2 or BERT decoder."""
from __future__ import annotations

from edge_caption.errors import ExportError

from . import bert, gpt2
from .base import (MemoryEncoder, SplitModel, as_id_list, generation_defaults, image_size, memory_names,
                   model_name, self_attention_state)

FAMILY = "vision-encoder-decoder"
# decoder class name -> (module with check/geometry, cross-KV module, step module)
DECODERS = {
    "GPT2LMHeadModel": (gpt2, gpt2.GPT2CrossKV, gpt2.GPT2Step),
    "BertLMHeadModel": (bert, bert.BertCrossKV, bert.BertStep),
}


def split(model) -> SplitModel:
    decoder_cls = type(model.decoder).__name__
    if decoder_cls not in DECODERS:
        raise ExportError(f"VisionEncoderDecoderModel with decoder {decoder_cls} is not supported; "
                          f"supported decoders: {', '.join(DECODERS)}")
    if getattr(model.encoder, "main_input_name", None) != "pixel_values":
        raise ExportError(f"VisionEncoderDecoderModel with encoder {type(model.encoder).__name__} is not supported; "
                          "supported encoders: vision models taking pixel_values (e.g. ViT, DeiT, Swin, BEiT)")
    module, cross_kv, step = DECODERS[decoder_cls]
    module.check(model.decoder)
    layers, heads, head_dim = module.geometry(model.decoder)

    gen = model.generation_config
    start = _first(gen.decoder_start_token_id, model.config.decoder_start_token_id,
                   getattr(model.decoder.config, "decoder_start_token_id", None),
                   gen.bos_token_id, model.decoder.config.bos_token_id)
    if start is None:
        raise ExportError("the model has no decoder_start_token_id (nor a decoder bos_token_id); set "
                          "model.generation_config.decoder_start_token_id before exporting")
    prompt = as_id_list(start)
    eos = as_id_list(_first(gen.eos_token_id, model.config.eos_token_id, model.decoder.config.eos_token_id))
    if not eos:
        raise ExportError("the model has no eos_token_id; set model.generation_config.eos_token_id before exporting")
    pad = _first(gen.pad_token_id, model.config.pad_token_id, model.decoder.config.pad_token_id)

    # VisionEncoderDecoderModel only creates enc_to_dec_proj when it uses it
    projection = getattr(model, "enc_to_dec_proj", None)
    return SplitModel(
        family=FAMILY,
        name=model_name(model),
        encoder=MemoryEncoder(model.encoder, cross_kv(model.decoder), projection).eval(),
        step=step(model.decoder).eval(),
        memory_names=memory_names(layers),
        state=self_attention_state(layers, heads, head_dim),
        vocab_size=model.decoder.config.vocab_size,
        image_size=image_size(model.config.encoder),
        prompt_ids=prompt,
        eos_token_ids=eos,
        pad_token_id=None if pad is None else int(pad),
        generation_defaults=generation_defaults(gen, len(prompt)),
        hf_model=model,
    )


def _first(*values):
    for v in values:
        if v is not None:
            return v
    return None
