"""The GIT adapter: the prefix K/V encoder and the step reproduce GitForCausalLM, and the ids follow generate()."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from edge_caption.errors import ExportError  # noqa: E402
from edge_caption.export.adapters import split_model  # noqa: E402
from edge_caption.export.attention import GROWING, SlotCache  # noqa: E402

from edge_caption.export import testing as models  # noqa: E402


def _image_tokens(model) -> int:
    vision = model.config.vision_config
    return (vision.image_size // vision.patch_size) ** 2 + 1


@torch.no_grad()
def test_image_tokens_never_see_the_text():
    """What the split rests on: in GitForCausalLM itself, the image tokens' outputs do not change with the text."""
    model = models.tiny_git(0)
    pixels = models.pixel_values(1)
    p = _image_tokens(model)
    a = model.git(input_ids=torch.tensor([[2, 40, 41]]), pixel_values=pixels).last_hidden_state
    b = model.git(input_ids=torch.tensor([[2, 90, 91, 92]]), pixel_values=pixels).last_hidden_state
    torch.testing.assert_close(a[:, :p], b[:, :p], rtol=0, atol=0)
    assert not torch.allclose(a[:, p + 1], b[:, p + 1])


@pytest.mark.parametrize("factory", ["tiny_git", "tiny_git_two_eos"])
@torch.no_grad()
def test_step_matches_full_recompute(factory):
    model = getattr(models, factory)(0)
    split = split_model(model)
    b, beams = 2, 3
    n = b * beams
    pixels = models.pixel_values(b, seed=1)
    memory = split.encoder(pixels)
    assert split.memory_names[:2] == ["prefix_key_0", "prefix_value_0"]
    assert all(m.shape[0] == b and m.shape[2] == _image_tokens(model) for m in memory), \
        "the prefix K/V is per image, not per beam"

    g = torch.Generator().manual_seed(2)
    words = torch.randint(6, split.vocab_size, (n, 2), generator=g)
    sequence = torch.cat([torch.tensor([split.prompt_ids] * n), words], 1)
    new, past = sequence, [torch.zeros(n, s.shape[1], 0, s.shape[3]) for s in split.state]
    for _ in range(4):
        logits, *past = split.step(new, *memory, *past)
        assert all(p.shape[2] == sequence.shape[1] for p in past), "the state is the text's own cache"
        ref = split.recompute(pixels.repeat_interleave(beams, 0), sequence)
        torch.testing.assert_close(logits, ref, atol=1e-4, rtol=1e-4)
        new = torch.randint(6, split.vocab_size, (n, 1), generator=g)
        sequence = torch.cat([sequence, new], 1)


@torch.no_grad()
def test_slot_cache_step_matches_the_growing_one():
    """run() with the static step's SlotCache (max-length cache written at the position) gives the
    dynamic step's logits and cache rows."""
    split = split_model(models.tiny_git(1))
    n, length = 4, 6
    memory = split.encoder(models.pixel_values(2))
    pairs = [(memory[i], memory[i + 1]) for i in range(0, len(memory), 2)]
    slots = [(torch.zeros(n, s.shape[1], length, s.shape[3]),) * 2 for s in split.state[::2]]
    grown = [(torch.zeros(n, s.shape[1], 0, s.shape[3]),) * 2 for s in split.state[::2]]
    g = torch.Generator().manual_seed(3)
    for position in range(length):
        ids = torch.randint(6, split.vocab_size, (n, 1), generator=g)
        at = torch.tensor([position])
        got, *slot_present = split.step.run(ids, at, pairs, slots, SlotCache(at, length))
        want, *present = split.step.run(ids, at, pairs, grown, GROWING)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        slots = [(slot_present[i], slot_present[i + 1]) for i in range(0, len(slot_present), 2)]
        grown = [(present[i], present[i + 1]) for i in range(0, len(present), 2)]
        torch.testing.assert_close(slots[0][0][:, :, :position + 1], grown[0][0])


@torch.no_grad()
def test_ids_follow_generate():
    model = models.tiny_git_two_eos(0)
    model.generation_config.num_beams = 3
    split = split_model(model)
    assert split.family == "git"
    assert split.prompt_ids == [models.WP_CLS]
    assert split.eos_token_ids == [models.WP_SEP, 58] and split.pad_token_id == models.WP_PAD
    assert split.generation_defaults == {"num_beams": 3, "max_new_tokens": 11}
    out = model.generate(pixel_values=models.pixel_values(2), max_new_tokens=2)
    assert out[:, :1].tolist() == [split.prompt_ids] * 2

    tok = models.tiny_tokenizer(kind="wordpiece")
    prompted = split_model(model, prompt="a photo of", tokenizer=tok)
    words = tok("a photo of", add_special_tokens=False).input_ids
    assert prompted.prompt_ids == [models.WP_CLS] + words
    out = model.generate(pixel_values=models.pixel_values(2), input_ids=torch.tensor([prompted.prompt_ids] * 2),
                         max_new_tokens=2)
    assert out[:, : len(prompted.prompt_ids)].tolist() == [prompted.prompt_ids] * 2


def test_split_from_directory_and_refusals(tmp_path):
    models.tiny_git(0).save_pretrained(tmp_path / "git")
    assert split_model(tmp_path / "git").family == "git"
    with pytest.raises(ExportError, match="needs the model's tokenizer"):
        split_model(models.tiny_git(0), prompt="a photo of")
    video = models.tiny_git(0)
    video.config.num_image_with_embedding = 6
    with pytest.raises(ExportError, match="num_image_with_embedding=6 captions videos"):
        split_model(video)
