"""GIT (GitForCausalLM, e.g. microsoft/git-base-coco): export a model folder with the CLI, caption the
sample photo, and check the tokens against the model's own `generate()`.

The model here is a tiny GIT built from a config with random weights, saved as a Hugging Face folder
with its processor's parts (a CLIPImageProcessor and a BERT tokenizer, both built locally): nothing is
downloaded. With a real checkpoint, point the CLI at its folder instead (your own download or your
Hugging Face cache's snapshot):

    edge-caption export --model ~/.cache/huggingface/hub/models--microsoft--git-base-coco/snapshots/<rev> \\
        --out git-base-coco.ecap [--targets onnx,torch] [--prompt "a photo of"]
    edge-caption caption git-base-coco.ecap photo.jpg --num-beams 3

    python examples/git.py [--out git.ecap] [--folder git-tiny]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

SAMPLE = Path(__file__).resolve().parents[1] / "edge_caption" / "data" / "sample.jpg"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("git.ecap"))
    parser.add_argument("--folder", type=Path, help="where to save the tiny model folder (default: a temporary one)")
    args = parser.parse_args()

    import torch
    from edge_caption import EdgeCaptioner
    from edge_caption.export.testing import tiny_bert_tokenizer, tiny_git, tiny_image_processor

    model, processor, tokenizer = tiny_git(seed=1), tiny_image_processor("clip"), tiny_bert_tokenizer()
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.folder or Path(scratch) / "git-tiny"
        for part in (model, processor, tokenizer):          # the layout of a checkpoint on the Hub
            part.save_pretrained(folder)
        command = [sys.executable, "-m", "edge_caption.cli", "export", "--model", str(folder), "--out", str(args.out),
                   "--overwrite"]
        print("running:", " ".join(command[2:]))
        subprocess.run(command, check=True)

    frame = cv2.imread(str(SAMPLE))                     # OpenCV BGR uint8, as a camera gives it
    pixels = processor(images=cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), return_tensors="np")["pixel_values"]
    eos = model.generation_config.eos_token_id
    same = True
    with EdgeCaptioner(args.out) as captioner:
        for options in (dict(num_beams=1), dict(num_beams=3)):
            caption = captioner.caption(frame, **options)
            with torch.no_grad():
                # GIT's generate() starts from [CLS] (bos) and stops on [SEP] (eos)
                reference = model.generate(pixel_values=torch.from_numpy(np.asarray(pixels)), **options)[0, 1:].tolist()
            reference = reference[: reference.index(eos) + 1] if eos in reference else reference
            print(f"{options}: {caption.text!r} tokens {list(caption.token_ids)}; "
                  + ", ".join(f"{k} {v:.1f} ms" for k, v in caption.timings.items()))
            same &= tuple(reference) == caption.token_ids
            if tuple(reference) != caption.token_ids:
                print(f"  generate() gave {reference}")
    print(f"generate() gives the same tokens: {same}")
    if not same:
        raise SystemExit("token mismatch")


if __name__ == "__main__":
    main()
