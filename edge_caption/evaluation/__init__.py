"""`edge-caption eval`: caption a labelled data set with a bundle and score it like COCO does."""
from __future__ import annotations

import itertools
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import DataError
from ..progress import Progress

DATA_FILE = "captions.json"


# Generated data sets beside scenes.SPLITS (the training generator's): name -> the module that makes them.
# Both need the [eval] extra (Pillow, scikit-image) and are imported only when named.
EXTRA_SPLITS = {"foreign-val": "foreign", "foreign-test": "foreign", "empty": "empty"}


def split_names() -> list[str]:
    """Every generated data set `--data` takes by name (each also as NAME@SEED)."""
    from . import scenes

    return [*scenes.SPLITS, *EXTRA_SPLITS]


def _maker(name: str):
    """The module that generates split `name` (each has SPLITS: name -> (stream, default size))."""
    from . import scenes

    if name in scenes.SPLITS:
        return scenes
    if EXTRA_SPLITS[name] == "foreign":
        from . import foreign
        return foreign
    from . import empty
    return empty


def _split(data: str | Path) -> tuple[str, int] | None:
    """(name, seed) when `data` names a generated split rather than an existing directory."""
    name, _, seed = str(data).partition("@")
    if name not in split_names() or Path(str(data)).exists():
        return None
    if seed and not seed.isdigit():
        raise DataError(f"bad split seed in {data!r}; write SPLIT@SEED with an integer seed, e.g. test@1")
    return name, int(seed or 0)


def generated(data: str | Path, *, limit: int | None = None) -> Iterator[Any] | None:
    """The samples (scenes.Sample: image, captions, things) of a generated split named `data`
    ("test", "foreign-test", "empty", "test@7", ...), or None when `data` names none (a directory)."""
    split = _split(data)
    if split is None:
        return None
    name, seed = split
    if name in EXTRA_SPLITS:
        from . import foreign_draw

        foreign_draw.require()        # the [eval] extra, named with its pip line
    return _maker(name).split_samples(name, seed=seed, count=limit)


def samples(data: str | Path, *, limit: int | None = None) -> Iterator[tuple[str, Any, list[str], tuple | None]]:
    """(id, image, references, things) for a generated split or a `captions.json` directory; `things`
    (the scene's objects, () for an empty view) is None for a directory, whose objects are unknown."""
    split = generated(data, limit=limit)
    if split is not None:
        name = str(data).partition("@")[0]
        for i, sample in enumerate(split):
            yield f"{name}_{i:05d}", sample.image, list(sample.captions), tuple(sample.things)
        return
    directory = Path(data)
    index = directory / DATA_FILE
    if not index.is_file():
        raise DataError(f"{data} is neither a split name ({', '.join(split_names())}) nor a directory with "
                        f"{DATA_FILE}; write one with edge_caption.evaluation.scenes.write_split(DIR, 'test')")
    try:
        entries = json.loads(index.read_text())["images"]
        rows = [(str(e["file"]), [str(c) for c in e["captions"]]) for e in entries]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(f"{index} is not {{'images': [{{'file': ..., 'captions': [...]}}]}}: {exc}") from exc
    for file, captions in rows[:limit]:
        if not captions:
            raise DataError(f"{index}: {file} has no reference captions; give every image at least one")
        yield file, directory / file, captions, None


def count(data: str | Path, *, limit: int | None = None) -> int:
    """How many images `samples(data, limit=limit)` yields, without drawing or reading them; an unusable
    `data` (no such split or directory, a bad seed, the [eval] extra missing) raises here, before any work."""
    split = _split(data)
    if split is None:
        return sum(1 for _ in load(data, limit=limit))
    if split[0] in EXTRA_SPLITS:
        from . import foreign_draw

        foreign_draw.require()
    default = _maker(split[0]).SPLITS[split[0]][1]
    return default if limit is None else limit


def load(data: str | Path, *, limit: int | None = None) -> Iterator[tuple[str, Any, list[str]]]:
    """(id, image, references) for a generated split ("test", "val", "train", "foreign-val", "foreign-test",
    "empty", or NAME@SEED), or a directory holding `captions.json` ({"images": [{"file", "captions"}]})."""
    for key, image, references, _ in samples(data, limit=limit):
        yield key, image, references


def evaluate(captioner, data: str | Path, *, limit: int | None = None, batch_size: int = 16,
             meteor: bool | None = None, progress: bool = True, **decoding: Any) -> dict[str, Any]:
    """Caption every image of `data` and score the captions against its references.

    Returns the metrics (BLEU-1..4, ROUGE-L, CIDEr, METEOR where Java and pycocoevalcap are present,
    exact-match rate), the number of images, the throughput, and every prediction."""
    from . import metrics, naming

    references: dict[str, list[str]] = {}
    hypotheses: dict[str, str] = {}
    scenes: dict[str, tuple | None] = {}
    total = count(data, limit=limit)
    if not total:
        raise DataError(f"{data} holds no images")
    items = samples(data, limit=limit)       # drawn as captioned: a foreign split is ~150 MB of frames at once
    bar = Progress(total, "eval", enabled=progress)
    started = time.perf_counter()
    while chunk := list(itertools.islice(items, batch_size)):
        captions = captioner.caption_batch([image if isinstance(image, np.ndarray) else str(image)
                                            for _, image, _, _ in chunk], **decoding)
        for (key, _, refs, things), caption in zip(chunk, captions):
            references[key], hypotheses[key], scenes[key] = refs, caption.text, things
        bar.advance(len(chunk))
    elapsed = time.perf_counter() - started
    bar.close()
    scores = metrics.evaluate(references, hypotheses, meteor=meteor)
    result = {"data": str(data), "images": len(hypotheses), "metrics": scores, "images_per_s": len(hypotheses) / elapsed,
              "model": f"{captioner.manifest.name}@{captioner.manifest.version}",
              "decoding": captioner.defaults.replace(**decoding).to_dict()}
    if all(things is not None for things in scenes.values()):
        # the objects are known (a generated split): how often the lone object is named, the empty caption used
        result["naming"] = naming.naming_report(list(scenes.values()), [hypotheses[key] for key in scenes])
    result["predictions"] = [{"id": k, "caption": hypotheses[k], "references": references[k],
                              **({} if scenes[k] is None else {"objects": [asdict(t) for t in scenes[k]]})}
                             for k in hypotheses]
    return result
