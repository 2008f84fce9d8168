"""BlipForConditionalGeneration (image captioning), unconditional or with a text prefix.

Ids follow BlipForConditionalGeneration.generate in transformers 5.x: it starts from
[bos, eos] (or the tokenized prompt, [CLS] ... [SEP]), overwrites the first id with text bos
([DEC]), drops the last id, and decodes with eos = text sep_token_id (not text eos_token_id) and
pad = text pad_token_id. Its returned ids begin with those prompt ids. It calls
`text_decoder.generate`, so the decoding defaults are the *text decoder's* generation config.
"""
from __future__ import annotations

from edge_caption.errors import ExportError

from . import bert
from .base import (MemoryEncoder, SplitModel, generation_defaults, image_size, memory_names, model_name,
                   self_attention_state)

FAMILY = "blip"


def prompt_ids(model, prompt=None) -> list[int]:
    """The ids BLIP's generate() starts decoding from, for `prompt`: None, or token ids as the BLIP
    processor returns them ([CLS] ... [SEP]; split_model tokenizes a string prompt)."""
    text = model.config.text_config
    if prompt is None:
        ids = [text.bos_token_id, text.eos_token_id]
    elif isinstance(prompt, (list, tuple)):
        ids = [int(i) for i in prompt]
    else:
        raise ExportError("a BLIP text prompt must be given as token ids (tokenize it with the model's "
                          "tokenizer first: tokenizer(prompt).input_ids)")
    if len(ids) < 2:
        raise ExportError(f"BLIP prompt ids must include the leading [CLS] and trailing [SEP], got {ids}")
    return [int(text.bos_token_id)] + ids[1:-1]


def split(model, prompt=None) -> SplitModel:
    decoder = model.text_decoder
    bert.check(decoder)
    layers, heads, head_dim = bert.geometry(decoder)
    text = model.config.text_config
    ids = prompt_ids(model, prompt)
    if text.sep_token_id is None:
        raise ExportError("BLIP's text config has no sep_token_id, which its generate() uses as EOS")
    return SplitModel(
        family=FAMILY,
        name=model_name(model),
        encoder=MemoryEncoder(model.vision_model, bert.BertCrossKV(decoder)).eval(),
        step=bert.BertStep(decoder).eval(),
        memory_names=memory_names(layers),
        state=self_attention_state(layers, heads, head_dim),
        vocab_size=text.vocab_size,
        image_size=image_size(model.config.vision_config),
        prompt_ids=ids,
        eos_token_ids=[int(text.sep_token_id)],
        pad_token_id=None if text.pad_token_id is None else int(text.pad_token_id),
        generation_defaults=generation_defaults(decoder.generation_config, len(ids)),
        hf_model=model,
    )
