"""Model adapters: a Hugging Face captioner -> SplitModel (encoder + decoder step + state spec)."""
from __future__ import annotations

import json
from pathlib import Path

from edge_caption.errors import ExportError

from .base import SplitModel

SUPPORTED = ("VisionEncoderDecoderModel (ViT/DeiT/Swin/... + GPT-2 or BERT decoder)",
             "BlipForConditionalGeneration",
             "GitForCausalLM (single-image GIT, e.g. microsoft/git-base-coco)",
             "Florence2ForConditionalGeneration (one task per bundle: --prompt \"<CAPTION>\")",
             "our reference families (show-tell, show-attend-tell, cnn-transformer; edge-caption train)")
_BY_MODEL_TYPE = {"vision-encoder-decoder": "VisionEncoderDecoderModel", "blip": "BlipForConditionalGeneration",
                  "git": "GitForCausalLM", "florence2": "Florence2ForConditionalGeneration"}

__all__ = ["SplitModel", "split_model", "SUPPORTED"]


def split_model(model_or_dir, *, prompt=None, tokenizer=None, processor=None) -> SplitModel:
    """Split a captioning model into the encoder / decoder-step contract.

    `model_or_dir`: an in-memory model or a local directory (loaded offline). `prompt`: a text prefix
    (BLIP, GIT), as a string (tokenized with `tokenizer`, or the directory's tokenizer) or token ids; or
    Florence-2's task token (default "<CAPTION>"), expanded by `processor` (or the directory's)."""
    import torch

    model = _load(model_or_dir) if isinstance(model_or_dir, (str, Path)) else model_or_dir
    if not isinstance(model, torch.nn.Module):
        raise ExportError(f"expected a model or a model directory, got {type(model).__name__}")
    model = model.float().eval()
    cls = type(model).__name__
    from ..families import ReferenceCaptioner

    if isinstance(model, ReferenceCaptioner):
        from . import reference

        if prompt is not None:
            raise ExportError(f"the {model.family} family starts every caption from its BOS token; it takes no prompt")
        return reference.split(model)
    if cls == "VisionEncoderDecoderModel":
        from . import vision_encoder_decoder

        if prompt is not None:
            raise ExportError("a prompt is only supported for BLIP and Florence-2; VisionEncoderDecoderModel starts from "
                              "its decoder_start_token_id")
        return vision_encoder_decoder.split(model)
    if cls == "BlipForConditionalGeneration":
        from . import blip

        if isinstance(prompt, str):
            if tokenizer is None and isinstance(model_or_dir, (str, Path)):
                from transformers import AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(str(model_or_dir), local_files_only=True)
            if tokenizer is None:
                raise ExportError("a text prompt needs the model's tokenizer: pass tokenizer=...")
            split = blip.split(model, list(tokenizer(prompt).input_ids))
            split.prompt = prompt
            return split
        return blip.split(model, prompt)
    if cls == "GitForCausalLM":
        from . import git

        if isinstance(prompt, str):
            # GIT's model card: [CLS] + the prompt's tokens without special tokens; git.prompt_ids adds [CLS]
            ids = list(_tokenizer(model_or_dir, tokenizer)(prompt, add_special_tokens=False).input_ids)
            split = git.split(model, ids)
            split.prompt = prompt
            return split
        return git.split(model, prompt)
    if cls == "Florence2ForConditionalGeneration":
        from . import florence2

        if not hasattr(processor, "tokenizer") and isinstance(model_or_dir, (str, Path)):
            processor = florence2.load_processor(model_or_dir)     # the directory's full processor
        return florence2.split(model, processor, prompt)
    raise ExportError(f"{cls} is not supported for export; supported: {'; '.join(SUPPORTED)}")


def _tokenizer(model_or_dir, tokenizer):
    """The tokenizer a string prompt needs: the one given, or the model directory's."""
    if tokenizer is None and isinstance(model_or_dir, (str, Path)):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(model_or_dir), local_files_only=True)
    if tokenizer is None:
        raise ExportError("a text prompt needs the model's tokenizer: pass tokenizer=...")
    return tokenizer


def _load(path):
    path = Path(path)
    from ..families import is_model_dir, load

    if is_model_dir(path):
        return load(path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ExportError(f"{path} is not a model directory (no config.json)")
    config = json.loads(config_file.read_text())
    names = [_BY_MODEL_TYPE.get(config.get("model_type"))] + list(config.get("architectures") or [])
    import transformers

    for name in names:
        if name in _BY_MODEL_TYPE.values():
            return getattr(transformers, name).from_pretrained(str(path), local_files_only=True)
    found = config.get("architectures") or config.get("model_type")
    raise ExportError(f"{path} holds a {found} model, which is not supported for export; "
                      f"supported: {'; '.join(SUPPORTED)}")
