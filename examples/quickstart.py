"""Quick start: export a captioner to a bundle and caption the sample photo on the CPU.

The model is a small ViT + GPT-2 VisionEncoderDecoder built from a config with random weights
(nothing can be downloaded here), so its caption is nonsense; what this shows is the path a real
model takes, and that our tokens are exactly the model's own `generate()` tokens.

    python examples/quickstart.py [--out quickstart.ecap]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

SAMPLE = Path(__file__).resolve().parents[1] / "edge_caption" / "data" / "sample.jpg"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("quickstart.ecap"))
    args = parser.parse_args()

    import torch
    from edge_caption import EdgeCaptioner
    from edge_caption.export import export
    from edge_caption.export.testing import tiny_image_processor, tiny_tokenizer, tiny_vit_gpt2

    model, processor, tokenizer = tiny_vit_gpt2(seed=1), tiny_image_processor("vit"), tiny_tokenizer(kind="bpe")
    bundle = export(model, args.out, processor=processor, tokenizer=tokenizer, overwrite=True)

    frame = cv2.imread(str(SAMPLE))                     # OpenCV BGR uint8, as a camera gives it
    with EdgeCaptioner(bundle) as captioner:
        caption = captioner.caption(frame, num_beams=3)
        print(f"caption:  {caption.text!r}")
        print(f"tokens:   {list(caption.token_ids)}")
        print(f"timings:  " + ", ".join(f"{k} {v:.1f} ms" for k, v in caption.timings.items()))
        print(f"backend:  {captioner.backend_name} ({captioner.backend_reason})")

    pixels = processor(images=cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), return_tensors="np")["pixel_values"]
    with torch.no_grad():
        reference = model.generate(pixel_values=torch.from_numpy(np.asarray(pixels)), num_beams=3)[0, 1:].tolist()
    eos = model.generation_config.eos_token_id
    reference = reference[: reference.index(eos) + 1] if eos in reference else reference
    same = tuple(reference) == caption.token_ids
    print(f"generate() gives the same tokens: {same}")
    if not same:
        raise SystemExit(f"token mismatch: generate() gave {reference}")


if __name__ == "__main__":
    main()
