"""Florence-2: export one task's bundle and check its captions against `generate()`.

A tiny Florence-2 (2-stage DaViT + 2+2-layer BART) built from its config with random weights, and a
Florence2Processor over a local byte-level tokenizer (nothing is downloaded), so the captions are
nonsense; what this shows is the path a real checkpoint takes. For microsoft/Florence-2-base or
-large (transformers' own: florence-community/Florence-2-base, -large), from your Hugging Face cache
or a folder:

    edge-caption export --model PATH/TO/Florence-2-base --prompt "<CAPTION>" --out florence2-caption.ecap

One bundle holds one task ("<CAPTION>", "<DETAILED_CAPTION>" or "<MORE_DETAILED_CAPTION>"): its
encoder graph holds the task's prompt, as the processor expands it.

    python examples/florence2.py [--out florence2.ecap] [--task "<CAPTION>"]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

SAMPLE = Path(__file__).resolve().parents[1] / "edge_caption" / "data" / "sample.jpg"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("florence2.ecap"))
    parser.add_argument("--task", default="<CAPTION>")
    args = parser.parse_args()

    import torch
    from edge_caption import EdgeCaptioner
    from edge_caption.errors import OptionError
    from edge_caption.export import export
    from edge_caption.export.testing_florence2 import florence2_processor, tiny_florence2

    model, processor = tiny_florence2(seed=0), florence2_processor()
    bundle = export(model, args.out, processor=processor, prompt=args.task, overwrite=True)

    frame = cv2.imread(str(SAMPLE))                     # OpenCV BGR uint8, as a camera gives it
    with EdgeCaptioner(bundle) as captioner:
        caption = captioner.caption(frame, num_beams=3)
        print(f"task:     {captioner.manifest.prompt}")
        print(f"caption:  {caption.text!r}")
        print(f"tokens:   {list(caption.token_ids)}")
        print(f"timings:  " + ", ".join(f"{k} {v:.1f} ms" for k, v in caption.timings.items()))
        other = "<MORE_DETAILED_CAPTION>" if args.task != "<MORE_DETAILED_CAPTION>" else "<CAPTION>"
        try:
            captioner.caption(frame, prompt=other)
        except OptionError as exc:
            print(f"another task is refused: {exc}")

    # generate() as Florence-2 is called: the processor writes the task's ids beside the pixels
    inputs = processor(text=args.task, images=cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), return_tensors="pt")
    with torch.no_grad():
        reference = model.generate(**inputs, num_beams=3)[0, 1:].tolist()
    eos = model.generation_config.eos_token_id
    reference = reference[: reference.index(eos) + 1] if eos in reference else reference
    same = tuple(reference) == caption.token_ids
    print(f"generate() gives the same tokens: {same}")
    if not same:
        raise SystemExit(f"token mismatch: generate() gave {reference}")


if __name__ == "__main__":
    main()
