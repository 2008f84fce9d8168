"""Parity at full size: ViT-B/16 + GPT-2 small (random weights) through the same export and loop."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")


@pytest.mark.slow
def test_vit_b_gpt2_small_matches_generate(tmp_path):
    from edge_caption import EdgeCaptioner
    from edge_caption.export import export
    from edge_caption.export.testing import tiny_image_processor, tiny_tokenizer, vit_gpt2_base

    model = vit_gpt2_base()
    bundle = export(model, tmp_path / "base.ecap", tokenizer=tiny_tokenizer(vocab_size=50257),
                    processor=tiny_image_processor("vit", size=224), progress=False)
    pixels = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    with EdgeCaptioner(bundle) as cap:
        for opts in (dict(num_beams=1), dict(num_beams=3), dict(num_beams=3, no_repeat_ngram_size=2)):
            opts["max_new_tokens"] = 16
            with torch.no_grad():
                ref = model.generate(pixel_values=torch.from_numpy(pixels), do_sample=False, **opts)
            for caption, row in zip(cap.caption_pixels(pixels, **opts), ref.tolist()):
                expected = row[1:]
                if 50256 in expected:
                    expected = expected[: expected.index(50256) + 1]
                assert caption.token_ids == tuple(expected), opts
