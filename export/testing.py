"""Small random-weight captioning models, tokenizers and image processors, built offline from configs.

Used by the tests, the examples and the benchmarks (nothing can be downloaded here). Every factory is deterministic in `seed`.
Weights use a large `initializer_range` so greedy/beam search emits varied tokens, and the EOS
logit gets a bias so that some sequences stop before the length limit (see DESIGN.md, "Models from
configs").
"""
from __future__ import annotations

IMAGE = 32          # pixel_values are [B, 3, IMAGE, IMAGE]
VOCAB = 320         # >= 256 so the byte-level BPE alphabet fits
# added to the EOS logit so that some captions end early, not all (BERT-style heads need more)
EOS_BIAS = 2.0
EOS_BIAS_BERT = 4.0

# GPT-2 style ids (byte-level BPE tokenizer, kind="bpe")
GPT2_BOS = GPT2_EOS = 0     # "<|endoftext|>" is start and end, as in the public ViT-GPT2 captioner
GPT2_PAD = 1
# BERT / BLIP style ids (WordPiece tokenizer, kind="wordpiece")
WP_PAD, WP_UNK, WP_CLS, WP_SEP, WP_MASK, WP_DEC = 0, 1, 2, 3, 4, 5


def _seeded(seed: int):
    import torch

    torch.manual_seed(seed)


def _gpt2_config(**over):
    from transformers import GPT2Config

    kw = dict(vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=2, n_inner=64,
              add_cross_attention=True, is_decoder=True, initializer_range=0.3,
              bos_token_id=GPT2_BOS, eos_token_id=GPT2_EOS, pad_token_id=GPT2_PAD,
              decoder_start_token_id=GPT2_BOS, scale_attn_by_inverse_layer_idx=True)
    kw.update(over)
    return GPT2Config(**kw)


def _bert_config(**over):
    from transformers import BertConfig

    kw = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
              intermediate_size=64, max_position_embeddings=64, is_decoder=True, add_cross_attention=True,
              initializer_range=0.3, pad_token_id=WP_PAD, bos_token_id=WP_CLS, eos_token_id=WP_SEP,
              decoder_start_token_id=WP_CLS, hidden_act="gelu")
    kw.update(over)
    return BertConfig(**kw)


def _ved(encoder_config, decoder_config, eos_logit_bias: float = EOS_BIAS):
    from transformers import VisionEncoderDecoderConfig, VisionEncoderDecoderModel

    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder_config, decoder_config)
    config.decoder_start_token_id = decoder_config.decoder_start_token_id
    config.pad_token_id = decoder_config.pad_token_id
    config.eos_token_id = decoder_config.eos_token_id
    model = VisionEncoderDecoderModel(config=config).eval()
    gc = model.generation_config
    gc.decoder_start_token_id = decoder_config.decoder_start_token_id
    gc.bos_token_id = decoder_config.bos_token_id
    gc.eos_token_id = decoder_config.eos_token_id
    gc.pad_token_id = decoder_config.pad_token_id
    gc.max_length = 12
    _bias_eos(model.decoder, decoder_config.eos_token_id, eos_logit_bias)
    return model


def _bias_eos(lm_model, eos_id: int, bias: float) -> None:
    """Raise the EOS logit through the LM head bias (GPT-2 has none, so give it an untied one)."""
    import torch

    head = lm_model.get_output_embeddings()
    with torch.no_grad():
        if head.bias is None:
            head.bias = torch.nn.Parameter(torch.zeros(head.out_features))
        head.bias[eos_id] += bias


def tiny_vit_gpt2(seed: int = 0):
    """ViT (hidden 48) -> GPT-2 (hidden 32): exercises enc_to_dec_proj and inverse-layer-idx scaling."""
    from transformers import ViTConfig

    _seeded(seed)
    enc = ViTConfig(image_size=IMAGE, patch_size=8, hidden_size=48, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, initializer_range=0.3)
    return _ved(enc, _gpt2_config())


def tiny_swin_gpt2(seed: int = 0):
    """Swin (final hidden 32 = decoder hidden, so no projection) -> GPT-2 with gelu_new."""
    from transformers import SwinConfig

    _seeded(seed)
    enc = SwinConfig(image_size=IMAGE, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2], window_size=4,
                     initializer_range=0.3)
    return _ved(enc, _gpt2_config(scale_attn_by_inverse_layer_idx=False, activation_function="gelu_new"))


def tiny_deit_bert(seed: int = 0):
    """DeiT (hidden 32) -> BERT-as-decoder (BertLMHeadModel with cross-attention)."""
    from transformers import DeiTConfig

    _seeded(seed)
    enc = DeiTConfig(image_size=IMAGE, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, initializer_range=0.3)
    return _ved(enc, _bert_config(), eos_logit_bias=EOS_BIAS_BERT)


def tiny_blip(seed: int = 0, eos_logit_bias: float = EOS_BIAS_BERT):
    """BLIP captioner: ViT-style vision model (hidden 48) -> BLIP text decoder (hidden 32)."""
    from transformers import BlipConfig, BlipForConditionalGeneration

    _seeded(seed)
    text = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=64, initializer_range=0.3, bos_token_id=WP_DEC, eos_token_id=WP_CLS,
                sep_token_id=WP_SEP, pad_token_id=WP_PAD)
    vision = dict(hidden_size=48, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  image_size=IMAGE, patch_size=8, initializer_range=0.3)
    # like the public BLIP checkpoints, text eos (2 = [CLS]) differs from sep ([SEP]), which generate() stops on
    model = BlipForConditionalGeneration(BlipConfig(text_config=text, vision_config=vision)).eval()
    _bias_eos(model.text_decoder, WP_SEP, eos_logit_bias)
    # BLIP's generate() runs text_decoder.generate, which reads the *text decoder's* generation config
    for gc in (model.generation_config, model.text_decoder.generation_config):
        gc.max_length = 12
    return model


def tiny_tokenizer(vocab_size: int = VOCAB, kind: str = "bpe"):
    """A PreTrainedTokenizerFast whose vocabulary covers ids 0..vocab_size-1 with the factories' special ids."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    if kind == "bpe":
        specials = ["<|endoftext|>", "<pad>", "<unk>"]
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        tokens = specials + sorted(alphabet)
        tokens += [f"Ġw{i}" for i in range(vocab_size - len(tokens))]
        vocab = {t: i for i, t in enumerate(tokens[:vocab_size])}
        tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                       pad_token="<pad>", unk_token="<unk>")
    elif kind == "wordpiece":
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]
        letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
        tokens = specials + letters + ["##" + c for c in letters] + list(".,!?")
        tokens += [f"w{i}" for i in range(vocab_size - len(tokens))]
        vocab = {t: i for i, t in enumerate(tokens[:vocab_size])}
        tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        from tokenizers.processors import TemplateProcessing

        tok.post_processor = TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                special_tokens=[("[CLS]", WP_CLS), ("[SEP]", WP_SEP)])
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                       cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                       bos_token="[DEC]")
    else:
        raise ValueError(f"kind must be 'bpe' or 'wordpiece', got {kind!r}")
    assert len(fast) >= vocab_size, "tokenizer must cover every id"
    return fast


def tiny_bert_tokenizer(vocab_size: int = VOCAB):
    """A transformers BertTokenizer (what GIT's and BLIP's checkpoints ship) over tiny_tokenizer's WordPiece
    vocabulary: [CLS] 2 and [SEP] 3 as the factories use them."""
    from transformers import BertTokenizer

    return BertTokenizer(vocab=tiny_tokenizer(vocab_size, kind="wordpiece").get_vocab())


def tiny_image_processor(kind: str = "vit", size: int = IMAGE):
    """The image processor matching the factories' image size (ViT-style or BLIP-style normalisation, or
    CLIP's shortest-edge resize + centre crop, bicubic, as GIT's checkpoints use)."""
    if kind == "clip":
        return _image_processor_class("CLIPImageProcessor")(size={"shortest_edge": size},
                                                           crop_size={"height": size, "width": size})
    if kind not in ("vit", "blip"):
        raise ValueError(f"kind must be 'vit', 'blip' or 'clip', got {kind!r}")
    return _image_processor_class("ViTImageProcessor" if kind == "vit" else "BlipImageProcessor")(
        size={"height": size, "width": size})


def _image_processor_class(name: str):
    """transformers 5 gives `name` to the torchvision-backed processor and, without torchvision, falls back to
    `{name}Pil` with a warning on every run that the user cannot act on: ask for the class that will run.
    (Both compute the same numbers; transformers 4 has only `name`.)"""
    import transformers
    from transformers.utils import is_torchvision_available

    if not is_torchvision_available():
        pil = getattr(transformers, f"{name}Pil", None)
        if pil is not None:
            return pil
    return getattr(transformers, name)


def tiny_git(seed: int = 0, eos_token_ids: tuple[int, ...] = (WP_SEP,)):
    """GIT (GitForCausalLM): CLIP-style vision tower (hidden 48, 17 image tokens) -> projection -> 2 text
    layers (hidden 32) over [image tokens ; text], ids as the COCO checkpoints ([CLS] starts, [SEP] ends).
    Every id in `eos_token_ids` stops generate(); each gets the EOS bias."""
    from transformers import GitConfig, GitForCausalLM

    _seeded(seed)
    vision = dict(hidden_size=48, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  image_size=IMAGE, patch_size=8, initializer_range=0.3)
    config = GitConfig(vision_config=vision, vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
                       initializer_range=0.3, bos_token_id=WP_CLS, eos_token_id=list(eos_token_ids)
                       if len(eos_token_ids) > 1 else eos_token_ids[0], pad_token_id=WP_PAD)
    model = GitForCausalLM(config).eval()
    for eos in eos_token_ids:
        _bias_eos(model, eos, EOS_BIAS_BERT)
    model.generation_config.max_length = 12
    return model


def tiny_git_two_eos(seed: int = 0):
    """tiny_git stopping on [SEP] or "." (id 58): generate() with more than one EOS id."""
    return tiny_git(seed, eos_token_ids=(WP_SEP, 58))


def git_base(seed: int = 0):
    """GIT-base shapes (microsoft/git-base-coco): CLIP ViT-B/16 at 224 (197 image tokens), 6 text layers
    768 wide, BERT's 30,522 tokens; random weights."""
    import torch
    from transformers import GitConfig, GitForCausalLM

    torch.manual_seed(seed)
    config = GitConfig(vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                          num_attention_heads=12, image_size=224, patch_size=16))
    return GitForCausalLM(config).eval()


def pixel_values(batch: int = 2, seed: int = 0, size: int = IMAGE):
    """Random float32 pixel_values [batch, 3, size, size] (already normalised)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, size, size, generator=g)


def vit_gpt2_base(seed: int = 0):
    """ViT-B/16 (224) + GPT-2 small (12 layers, 768 wide, 50,257 tokens), random weights."""
    import torch
    from transformers import GPT2Config, ViTConfig, VisionEncoderDecoderConfig, VisionEncoderDecoderModel

    torch.manual_seed(seed)
    decoder = GPT2Config(add_cross_attention=True, is_decoder=True, bos_token_id=50256, eos_token_id=50256,
                         decoder_start_token_id=50256, pad_token_id=50256)
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(ViTConfig(), decoder)
    config.decoder_start_token_id = config.pad_token_id = config.eos_token_id = 50256
    model = VisionEncoderDecoderModel(config=config).eval()
    gc = model.generation_config
    gc.decoder_start_token_id = gc.bos_token_id = gc.eos_token_id = gc.pad_token_id = 50256
    return model
