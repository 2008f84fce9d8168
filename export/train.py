"""Train a reference captioner on the generated scenes, on a CPU: `edge-caption train`.

Reproducible from the seed: the data split is fixed, the seed sets the initial weights and the
order of batches. Validation decodes the val split greedily with the runtime's own decoding loop
(over the PyTorch modules) and scores it with the runtime's metrics, so the val CIDEr in the log
is what `edge-caption eval` will report for the exported bundle. The best checkpoint is kept.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge_caption.errors import ExportError

DEFAULT_STEPS = 2000
# Shares of each batch drawn by augment.py: objects shown the ways a camera may show them, and views with
# nothing to name ("an empty scene"); the rest are the train split's scenes as generated.
DEFAULT_AUGMENT = 0.5
DEFAULT_EMPTY = 0.12


def train(family: str, out: str | Path, *, steps: int = DEFAULT_STEPS, batch_size: int = 64, lr: float | None = None,
          seed: int = 0, eval_every: int = 500, train_count: int | None = None, val_count: int = 500,
          threads: int | None = None, augment: float = DEFAULT_AUGMENT, empty: float = DEFAULT_EMPTY,
          init: str | Path | None = None, fit: str | None = None, image_size: int | None = None,
          overwrite: bool = False, progress: bool = True, **model_config: Any) -> dict[str, Any]:
    """Train `family` for `steps` batches and save the best (by val CIDEr) weights in `out`.

    `augment` and `empty` are the shares of each batch that `export/augment.py` draws (augmented
    object scenes, empty views); 0 and 0 train on the generated train split alone. `init`: start from
    the weights of an earlier run (its directory) instead of fresh ones, to train on. `fit`: how frames of
    another aspect meet the square input, "stretch" or "letterbox" (kept aspect, grey bars); None: the
    `init` run's, else stretch. A run may change it: the weights do not depend on it. `image_size`: the
    square input's side, a multiple of 16; None: the `init` run's, else 96. A run may change it too: the
    convolutions carry over and the grid's position embedding is resampled (`ReferenceCaptioner.resized`).

    Writes `out/config.json` + `out/weights.pt` (what `edge-caption export --model out` reads),
    `out/train_log.jsonl` (loss every 50 steps, val scores every `eval_every`) and `out/summary.json`,
    all in a scratch folder that becomes `out` when training ends (see writer.py: `out` must be new,
    empty, or an earlier training run with `overwrite`)."""
    from . import families

    if family not in families.FAMILIES:
        raise ExportError(f"unknown family {family!r}; choose one of: {', '.join(families.FAMILIES)}")
    from edge_caption.manifest import FIT_MODES

    if fit is not None and fit not in FIT_MODES:
        raise ExportError(f"unknown fit {fit!r}; choose one of: {', '.join(FIT_MODES)}")
    if image_size is not None:
        families.check_image_size(image_size)
    if not (0 <= augment and 0 <= empty and augment + empty <= 1):
        raise ExportError(f"augment ({augment}) and empty ({empty}) are shares of a batch: each >= 0, "
                          "together at most 1 (e.g. --augment 0.5 --empty 0.12)")
    from .writer import TRAINING_RUN, staging

    with staging(out, overwrite, kind=TRAINING_RUN, sources=[init] if init is not None else []) as scratch:
        return _train(family, Path(out), scratch, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                      eval_every=eval_every, train_count=train_count, val_count=val_count, threads=threads,
                      augment=augment, empty=empty, init=init, fit=fit, image_size=image_size, progress=progress,
                      **model_config)


def _train(family: str, out: Path, scratch: Path, *, steps: int, batch_size: int, lr: float | None, seed: int,
           eval_every: int, train_count: int | None, val_count: int, threads: int | None, augment: float,
           empty: float, init: str | Path | None, fit: str | None, image_size: int | None, progress: bool,
           **model_config: Any) -> dict[str, Any]:
    """train()'s work, written into `scratch`, which becomes `out` when it returns."""
    import torch

    from edge_caption.evaluation.scenes import encode_caption, split_samples

    from . import families
    from edge_caption.progress import reporter
    from .module_backend import ModuleBackend

    torch.set_num_threads(threads or max(1, len(os.sched_getaffinity(0))))
    say = reporter(progress, "train")

    images, captions = training_data(train_count, progress=say)
    if init is None:
        model = families.create(family, seed=seed, **model_config,
                                **({} if image_size is None else {"image_size": image_size}))
    else:
        model = _start_from(init, family, seed, image_size)
    if fit is not None:
        model.config["fit"] = fit
    vocab = {w: i for i, w in enumerate(model.vocab)}
    encoded = [[np.asarray(encode_caption(c, vocab), dtype=np.int64) for c in caps] for caps in captions]
    val = list(split_samples("val", count=val_count))
    lr = lr or (1e-3 if family == "cnn-transformer" else 2e-3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warmup = min(300, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, warmup, steps))
    rng = np.random.default_rng([seed, 7])
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=families.PAD, label_smoothing=0.05)
    spec = model.preprocess()
    n_augment, n_empty = round(batch_size * augment), round(batch_size * empty)
    extras = None
    if n_augment + n_empty:
        from .augment import batches

        extras = batches(seed, n_augment, n_empty, steps, spec)

    log = (scratch / "train_log.jsonl").open("w")
    best: dict[str, Any] = {"CIDEr": -1.0}
    started = time.perf_counter()
    bar = _bar(steps, progress, f"train {family}")
    running = 0.0
    model.train()
    for step in range(1, steps + 1):
        extra = None if extras is None else _encode_extra(next(extras), vocab)
        pixels, inputs, targets = _batch(images, encoded, rng, batch_size - n_augment - n_empty, spec, extra)
        logits = model.forward_train(pixels, inputs)
        loss = loss_fn(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
        optimizer.step()
        schedule.step()
        running = loss.item() if step == 1 else 0.98 * running + 0.02 * loss.item()
        bar(1, loss=f"{running:.3f}")
        if step % 50 == 0 or step == steps:
            _write(log, {"step": step, "loss": round(running, 5), "lr": schedule.get_last_lr()[0],
                         "elapsed_s": round(time.perf_counter() - started, 1)})
        if step % eval_every == 0 or step == steps:
            scores = validate(model, val, ModuleBackend)
            model.train()
            _write(log, {"step": step, "val": scores, "elapsed_s": round(time.perf_counter() - started, 1)})
            say(f"step {step}: loss {running:.3f}, val CIDEr {scores['CIDEr']:.3f}, BLEU-4 {scores['BLEU-4']:.3f}, "
                f"exact {scores['exact']:.3f}")
            if scores["CIDEr"] > best["CIDEr"]:
                best = {**scores, "step": step}
                model.eval()
                model.save(scratch)
                model.train()
    bar(0, close=True)
    log.close()
    if extras is not None:
        extras.close()
    summary = {"family": family, "seed": seed, "steps": steps, "batch_size": batch_size, "lr": lr,
               "augment": augment, "empty": empty, "init": None if init is None else str(init), "fit": spec.fit,
               "image_size": model.image_size,
               "train_images": len(images), "val_images": len(val), "best_val": best,
               "train_time_s": round(time.perf_counter() - started, 1), "torch": torch.__version__,
               "threads": torch.get_num_threads(), "parameters": sum(p.numel() for p in model.parameters())}
    (scratch / "summary.json").write_text(json.dumps(summary, indent=1))
    say(f"best val CIDEr {best['CIDEr']:.3f} at step {best.get('step')}; model saved in {out}")
    return summary


def _start_from(init: str | Path, family: str, seed: int, image_size: int | None = None):
    """The model saved in run directory `init`, to train further (dropout's draws follow `seed`), at
    `image_size` px if that is given."""
    import torch

    from . import families

    model = families.load(init)
    if model.family != family:
        raise ExportError(f"{init} holds a {model.family} model, not {family}; pass --family {model.family}")
    if image_size is not None and image_size != model.image_size:
        model = model.resized(image_size)
    torch.manual_seed(seed)
    return model


def validate(model, samples, backend_cls, *, batch: int = 250) -> dict[str, float]:
    """Greedy captions of `samples` through the runtime's decoding loop, scored like `edge-caption eval`."""
    from edge_caption.evaluation import metrics
    from edge_caption.decoding import decode
    from edge_caption.options import DecodeOptions
    from edge_caption.preprocess import preprocess

    from edge_caption.manifest import TokenizerSpec

    from .adapters import split_model
    from .api import manifest_for

    split = split_model(model)
    manifest = manifest_for(split, split.preprocess, TokenizerSpec("tokenizer.json", tuple(split.prompt_ids),
                                                                   tuple(split.eos_token_ids), split.pad_token_id))
    backend = backend_cls(split)
    options = DecodeOptions.from_mapping(manifest.decoding).replace(num_beams=1)
    tokenizer = split.tokenizer
    hypotheses, references = {}, {}
    for start in range(0, len(samples), batch):
        chunk = samples[start:start + batch]
        pixels = preprocess([s.image[..., ::-1] for s in chunk], manifest.preprocess)
        found = decode(backend, manifest, backend.encode(pixels), options)
        for i, (sample, hyps) in enumerate(zip(chunk, found)):
            hypotheses[start + i] = tokenizer.decode(list(hyps[0].token_ids), skip_special_tokens=True)
            references[start + i] = list(sample.captions)
    return metrics.evaluate(references, hypotheses, meteor=False)


def training_data(count: int | None = None, *, progress: Callable[[str], None] = print
                  ) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    """The train split's images (BGR uint8 [N,96,96,3]) and captions, rendered once and cached."""
    from edge_caption.evaluation.scenes import SPLITS, split_samples

    count = count or SPLITS["train"][1]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edge-caption" / f"scenes-train-0-{count}.npz"
    if cache.is_file():
        with np.load(cache) as data:
            return data["images"], [tuple(c) for c in json.loads(str(data["captions"]))]
    progress(f"rendering {count} training scenes (cached in {cache})")
    samples = list(split_samples("train", count=count))
    images = np.stack([s.image for s in samples])
    captions = [s.captions for s in samples]
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, images=images, captions=np.asarray(json.dumps(captions)))
    tmp.replace(cache)
    return images, captions


def _encode_extra(extra, vocab):
    from edge_caption.evaluation.scenes import encode_caption

    frames, captions = extra
    return frames, [[np.asarray(encode_caption(c, vocab), dtype=np.int64) for c in caps] for caps in captions]


def _batch(images, encoded, rng, size, spec, extra=None):
    """`size` train-split scenes drawn at random, then `extra`'s frames (augment.py's), as tensors."""
    import torch

    from edge_caption.preprocess import preprocess

    from .families import BOS, EOS, PAD

    index = rng.integers(0, len(images), size)
    frames = [images[i] for i in index]
    choices = [encoded[i] for i in index]
    if extra is not None:
        frames += list(extra[0])
        choices += extra[1]
    rows = []
    for options in choices:
        rows.append(options[rng.integers(len(options))])
    longest = max(len(r) for r in rows) + 2
    tokens = np.full((len(rows), longest), PAD, dtype=np.int64)
    for j, r in enumerate(rows):
        tokens[j, : len(r) + 2] = [BOS, *r, EOS]
    pixels = torch.from_numpy(preprocess([f[..., ::-1] for f in frames], spec))
    tokens = torch.from_numpy(tokens)
    return pixels, tokens[:, :-1], tokens[:, 1:]


def _lr_factor(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _write(log, record: dict) -> None:
    log.write(json.dumps(record) + "\n")
    log.flush()


def _bar(total: int, enabled: bool, label: str):
    """A tqdm bar as one callable: bar(n, **postfix) advances, bar(0, close=True) ends."""
    if not enabled:
        return lambda n, close=False, **postfix: None
    from tqdm import tqdm

    bar = tqdm(total=total, desc=label, unit="step", mininterval=2.0)

    def update(n, close=False, **postfix):
        if close:
            bar.close()
            return
        bar.update(n)
        if postfix and bar.n % 25 == 0:
            bar.set_postfix(postfix, refresh=False)
    return update
