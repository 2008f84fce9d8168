"""Tiny random-weight Florence-2 models, with the tokenizer and processor they need, built offline.

Beside testing.py (the other families' factories), for the tests, examples/florence2.py and the
benchmarks. Deterministic in `seed`; weights are large (BART's `init_std` 1.0, DaViT's 0.3) and the
EOS logit gets a small bias so greedy and beam search emit varied tokens and some captions stop early.
"""
from __future__ import annotations

from .testing import IMAGE, VOCAB, _bias_eos, _seeded

# BART's special ids, as Florence-2's tokenizer has them; the image placeholder is the last id
F2_BOS, F2_PAD, F2_EOS, F2_UNK = 0, 1, 2, 3
F2_IMAGE = VOCAB - 1
# BART's LayerNorm-ed output against an untied head of std 1: logits of std ~6, and EOS already near the top
F2_EOS_BIAS = 0.3
ENCODER_SCALE = 0.3
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _vision(**over) -> dict:
    # two DaViT stages: 32x32 -> 8x8 -> 4x4 = 16 spatial tokens + 1 pooled = 17 image tokens
    kw = dict(depths=[1, 1], patch_size=[7, 3], patch_stride=[4, 2], patch_padding=[3, 1], patch_prenorm=[False, True],
              embed_dim=[16, 32], num_heads=[2, 4], num_groups=[2, 4], window_size=2, projection_dim=32,
              max_position_embeddings=8, max_temporal_embeddings=4, initializer_range=0.3, drop_path_rate=0.0)
    kw.update(over)
    return kw


def tiny_florence2(seed: int = 0, eos_token_id=F2_EOS, eos_logit_bias: float = F2_EOS_BIAS):
    """Florence-2 with a 2-stage DaViT (32x32 in, 17 image tokens) and a 2+2-layer BART of width 32.

    `eos_token_id` may be a list: several EOS ids (the first gets the bias; pick the others among ids
    the model emits often). BART's generation config
    forces EOS at the length limit (forced_eos_token_id), which edge-caption does not do: it is
    turned off here, so the parity tests compare like with like (see export/adapters/florence2.py)."""
    from transformers import Florence2Config, Florence2ForConditionalGeneration

    _seeded(seed)
    text = dict(vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=128,
                bos_token_id=F2_BOS, pad_token_id=F2_PAD, eos_token_id=F2_EOS, decoder_start_token_id=F2_EOS,
                init_std=1.0, tie_word_embeddings=False)
    # untied: a tied head scores the fed token highest, so random weights would repeat one id
    model = Florence2ForConditionalGeneration(
        Florence2Config(vision_config=_vision(), text_config=text, image_token_id=F2_IMAGE,
                        tie_word_embeddings=False)).eval()
    import torch

    # std 1 makes the decoder's tokens vary; in the encoder it would make fp32 rounding show (1e-4 of 17)
    with torch.no_grad():
        for name, param in model.model.language_model.encoder.named_parameters():
            if "norm" not in name:
                param.mul_(ENCODER_SCALE)
    eos = list(eos_token_id) if isinstance(eos_token_id, (list, tuple)) else [eos_token_id]
    gc = model.generation_config
    gc.eos_token_id = eos if len(eos) > 1 else eos[0]
    gc.forced_eos_token_id = None
    gc.max_length = 12
    _bias_eos(model, eos[0], eos_logit_bias)
    return model


def florence2_base(seed: int = 0):
    """Florence-2-base's shapes (DaViT 128..1024 wide, 1+1+9+1 blocks, 768x768 in, 577 image tokens;
    BART 6+6 layers, 768 wide, 51,289 tokens), random weights."""
    import torch
    from transformers import Florence2Config, Florence2ForConditionalGeneration

    torch.manual_seed(seed)
    text = dict(vocab_size=51289, d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12,
                decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072, max_position_embeddings=1024,
                bos_token_id=0, pad_token_id=1, eos_token_id=2, decoder_start_token_id=2)
    vision = dict(projection_dim=768, max_position_embeddings=50, max_temporal_embeddings=100, drop_path_rate=0.0)
    model = Florence2ForConditionalGeneration(
        Florence2Config(vision_config=vision, text_config=text, image_token_id=51289 - 1)).eval()
    model.generation_config.forced_eos_token_id = None
    return model


def florence2_tokenizer(vocab_size: int = VOCAB):
    """A byte-level BPE tokenizer with BART's specials at 0..3 and Florence-2's "<image>" at the last id."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tokens = ["<s>", "<pad>", "</s>", "<unk>"] + sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens += [f"Ġw{i}" for i in range(vocab_size - 1 - len(tokens))] + ["<image>"]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", extra_special_tokens={"image_token": "<image>"})
    assert fast.image_token_id == vocab_size - 1
    return fast


def florence2_processor(size: int = IMAGE, image_tokens: int = 17, vocab_size: int = VOCAB):
    """Florence2Processor as the checkpoints configure it (bicubic resize to size x size, ImageNet mean/std,
    `image_tokens` placeholders), over florence2_tokenizer()."""
    from transformers import Florence2Processor

    from .testing import _image_processor_class

    image = _image_processor_class("CLIPImageProcessor")(
        size={"height": size, "width": size}, do_center_crop=False, resample=3, image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD), image_seq_length=image_tokens)
    return Florence2Processor(image_processor=image, tokenizer=florence2_tokenizer(vocab_size))


def encoder_ids(processor, task: str = "<CAPTION>", batch: int = 1):
    """The processor's input_ids for `task` (image placeholders, <s>, the task's question, </s>), `batch` rows."""
    import torch

    from .adapters.florence2 import task_ids

    return torch.tensor([task_ids(processor, task)] * batch)
