"""`edge-caption eval`: caption a labelled data set with a bundle and score it like COCO does."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import DataError
from ..progress import Progress

DATA_FILE = "captions.json"


def load(data: str | Path, *, limit: int | None = None) -> Iterator[tuple[str, Any, list[str]]]:
    """(id, image, references) for a generated split ("test", "val", "train", or "test@SEED"), or a
    directory holding `captions.json` ({"images": [{"file", "captions"}]}) and the images."""
    from . import scenes

    name, _, seed = str(data).partition("@")
    if name in scenes.SPLITS and not Path(str(data)).exists():
        if seed and not seed.isdigit():
            raise DataError(f"bad split seed in {data!r}; write SPLIT@SEED with an integer seed, e.g. test@1")
        for i, sample in enumerate(scenes.split_samples(name, seed=int(seed or 0), count=limit)):
            yield f"{name}_{i:05d}", sample.image, list(sample.captions)
        return
    directory = Path(data)
    index = directory / DATA_FILE
    if not index.is_file():
        raise DataError(f"{data} is neither a split name ({', '.join(scenes.SPLITS)}) nor a directory with "
                        f"{DATA_FILE}; write one with edge_caption.evaluation.scenes.write_split(DIR, 'test')")
    try:
        entries = json.loads(index.read_text())["images"]
        rows = [(str(e["file"]), [str(c) for c in e["captions"]]) for e in entries]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(f"{index} is not {{'images': [{{'file': ..., 'captions': [...]}}]}}: {exc}") from exc
    for file, captions in rows[:limit]:
        if not captions:
            raise DataError(f"{index}: {file} has no reference captions; give every image at least one")
        yield file, directory / file, captions


def evaluate(captioner, data: str | Path, *, limit: int | None = None, batch_size: int = 16,
             meteor: bool | None = None, progress: bool = True, **decoding: Any) -> dict[str, Any]:
    """Caption every image of `data` and score the captions against its references.

    Returns the metrics (BLEU-1..4, ROUGE-L, CIDEr, METEOR where Java and pycocoevalcap are present,
    exact-match rate), the number of images, the throughput, and every prediction."""
    from . import metrics

    references: dict[str, list[str]] = {}
    hypotheses: dict[str, str] = {}
    items = list(load(data, limit=limit))
    if not items:
        raise DataError(f"{data} holds no images")
    bar = Progress(len(items), "eval", enabled=progress)
    started = time.perf_counter()
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        captions = captioner.caption_batch([image if isinstance(image, np.ndarray) else str(image)
                                            for _, image, _ in chunk], **decoding)
        for (key, _, refs), caption in zip(chunk, captions):
            references[key], hypotheses[key] = refs, caption.text
        bar.advance(len(chunk))
    elapsed = time.perf_counter() - started
    bar.close()
    scores = metrics.evaluate(references, hypotheses, meteor=meteor)
    return {"data": str(data), "images": len(items), "metrics": scores,
            "images_per_s": len(items) / elapsed, "model": f"{captioner.manifest.name}@{captioner.manifest.version}",
            "decoding": captioner.defaults.replace(**decoding).to_dict(),
            "predictions": [{"id": k, "caption": hypotheses[k], "references": references[k]} for k in hypotheses]}
