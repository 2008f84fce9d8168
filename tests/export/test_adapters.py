"""Adapters: the torch encoder/step modules reproduce the Hugging Face model, and the ids are right."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from edge_caption.errors import ExportError  # noqa: E402
from edge_caption.export.adapters import split_model  # noqa: E402

from edge_caption.export import testing as models  # noqa: E402

FAMILIES = ["vit_gpt2", "swin_gpt2", "deit_bert", "blip"]


def hf_last_logits(split, pixels, sequence):
    model = split.hf_model
    if split.family == "blip":
        return model(pixel_values=pixels, input_ids=sequence).logits[:, -1]
    return model(pixel_values=pixels, decoder_input_ids=sequence, use_cache=False).logits[:, -1]


@pytest.mark.parametrize("family", FAMILIES)
@torch.no_grad()
def test_step_matches_full_recompute(family):
    split = split_model(getattr(models, f"tiny_{family}")(0))
    b, beams = 2, 3
    n = b * beams
    pixels = models.pixel_values(b, seed=1)
    memory = split.encoder(pixels)
    assert len(memory) == len(split.memory_names)
    assert all(m.shape[0] == b for m in memory), "cross K/V must be per image, not per beam"

    g = torch.Generator().manual_seed(2)
    # first step: prompt plus two tokens (L > 1 at T = 0), then one token per step, rows differ per beam
    sequence = torch.cat([torch.tensor([split.prompt_ids] * n), torch.randint(6, split.vocab_size, (n, 2), generator=g)], 1)
    new, past = sequence, [torch.zeros(n, s.shape[1], 0, s.shape[3]) for s in split.state]
    for _ in range(4):
        logits, *past = split.step(new, *memory, *past)
        assert logits.shape == (n, split.vocab_size)
        assert all(p.shape[2] == sequence.shape[1] for p in past)
        ref = hf_last_logits(split, pixels.repeat_interleave(beams, 0), sequence)
        torch.testing.assert_close(logits, ref, atol=1e-4, rtol=1e-4)
        new = torch.randint(6, split.vocab_size, (n, 1), generator=g)
        sequence = torch.cat([sequence, new], 1)


def test_ved_ids_and_defaults():
    model = models.tiny_deit_bert(0)
    model.generation_config.num_beams = 3
    model.generation_config.length_penalty = 0.5
    split = split_model(model)
    assert split.family == "vision-encoder-decoder"
    assert split.prompt_ids == [models.WP_CLS]
    assert split.eos_token_ids == [models.WP_SEP]
    assert split.pad_token_id == models.WP_PAD
    assert split.image_size == (models.IMAGE, models.IMAGE)
    assert split.generation_defaults == {"num_beams": 3, "length_penalty": 0.5, "max_new_tokens": 11}
    assert [s.input for s in split.state] == ["past_key_0", "past_value_0", "past_key_1", "past_value_1"]
    assert split.state[0].output == "present_key_0" and split.state[0].shape == ("N", 4, "T", 8)
    assert split.memory_names == ["cross_key_0", "cross_value_0", "cross_key_1", "cross_value_1"]


@torch.no_grad()
def test_blip_ids_follow_generate():
    model = models.tiny_blip(0)
    split = split_model(model)
    text = model.config.text_config
    # generate() starts from [bos] ([DEC]) and stops on sep, not on text eos_token_id
    assert split.prompt_ids == [models.WP_DEC]
    assert split.eos_token_ids == [models.WP_SEP] and text.eos_token_id != models.WP_SEP
    out = model.generate(models.pixel_values(2), max_new_tokens=3)
    assert out[:, :1].tolist() == [split.prompt_ids] * 2

    tok = models.tiny_tokenizer(kind="wordpiece")
    prompted = split_model(model, prompt="a photo of", tokenizer=tok)
    ids = tok("a photo of").input_ids            # [CLS] ... [SEP]
    assert prompted.prompt_ids == [models.WP_DEC] + ids[1:-1]
    out = model.generate(models.pixel_values(2), input_ids=torch.tensor([ids] * 2), max_new_tokens=2)
    assert out[:, : len(prompted.prompt_ids)].tolist() == [prompted.prompt_ids] * 2


def test_blip_defaults_come_from_text_decoder():
    model = models.tiny_blip(0)
    model.text_decoder.generation_config.num_beams = 4
    assert split_model(model).generation_defaults["num_beams"] == 4


def test_split_from_directory(tmp_path):
    models.tiny_vit_gpt2(0).save_pretrained(tmp_path / "m")
    split = split_model(tmp_path / "m")
    assert split.family == "vision-encoder-decoder" and split.prompt_ids == [models.GPT2_BOS]


def test_unsupported_models_raise(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    with pytest.raises(ExportError, match="GPT2LMHeadModel is not supported.*BlipForConditionalGeneration"):
        split_model(GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50)))

    ved = models.tiny_vit_gpt2(0)
    from transformers import RobertaConfig, RobertaForCausalLM

    ved.decoder = RobertaForCausalLM(RobertaConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=2,
                                                   intermediate_size=32, vocab_size=50, is_decoder=True,
                                                   add_cross_attention=True))
    with pytest.raises(ExportError, match="RobertaForCausalLM is not supported.*GPT2LMHeadModel, BertLMHeadModel"):
        split_model(ved)

    (tmp_path / "config.json").write_text('{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}')
    with pytest.raises(ExportError, match="not supported"):
        split_model(tmp_path)
    with pytest.raises(ExportError, match="no config.json"):
        split_model(tmp_path / "missing")
    with pytest.raises(ExportError, match="only supported for BLIP"):
        split_model(models.tiny_vit_gpt2(0), prompt="a")
