"""Sequence-level fine-tuning of a trained captioner: `edge-caption train --init RUN --finetune scst|gan`.

Cross-entropy teaches the next word given the reference's words; these methods train on the model's
own captions, scored as a whole, by the policy gradient (REINFORCE) with the greedy caption as the
baseline (self-critical, Rennie et al. 2017): advantage = reward(drawn caption) - reward(greedy caption),
loss = -advantage x log p(drawn caption).

- "scst": the reward is CIDEr-D against the image's references, document frequencies from the
  training split's references (metrics.CiderD).
- "gan": the reward is a learned discriminator's P(real) (discriminator.py), trained alternately with
  the captioner: one discriminator update on each batch's drawn captions, then one captioner update.

The CNN backbone stays frozen (its batch-norm statistics too: the model runs in eval mode, no dropout),
so only the decoder moves. The val split is scored before the first step and every `eval_every`
steps; the best (the starting point included) is saved, so a method that does not help leaves the
model as it was, and the log says so.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_caption.errors import OptionError
from edge_caption.manifest import FIT_MODES

METHODS = ("scst", "gan")
DEFAULT_STEPS = 300


def finetune(init: str | Path, out: str | Path, *, method: str, steps: int = DEFAULT_STEPS, batch_size: int = 16,
             draws: int = 5, lr: float | None = None, seed: int = 0, eval_every: int = 100,
             train_count: int | None = None, val_count: int = 500, judge_warmup: int = 50, augment: float = 0.0,
             threads: int | None = None, overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Fine-tune the run in `init` (a folder `edge-caption train` wrote) by `method` for `steps` batches of
    `batch_size` images x `draws` sampled captions; write the best by val CIDEr to `out` (a training run
    `edge-caption export --model` reads). `judge_warmup`: discriminator-only steps before "gan" starts.
    `augment`: the share of each batch drawn by augment.py (objects at any scale, rotation and aspect, as
    cross-entropy training draws them); 0, the default, fine-tunes on the generated train split alone."""
    if method not in METHODS:
        raise OptionError(f"unknown fine-tuning method {method!r}; choose one of: {', '.join(METHODS)}")
    run_family(init)        # a folder that is not a training run is refused before anything is written
    if draws < 1 or steps < 1 or batch_size < 2:
        raise OptionError(f"steps and draws must be >= 1 and the batch size >= 2 (a mismatched caption comes from "
                          f"another image of the batch); got {steps}, {draws}, {batch_size}")
    if not 0 <= augment < 1:
        raise OptionError(f"--augment is the share of a batch that is augmented scenes: 0 <= it < 1, got {augment}")
    from .writer import TRAINING_RUN, staging

    with staging(out, overwrite, kind=TRAINING_RUN, sources=[init]) as scratch:
        return _finetune(Path(init), Path(out), scratch, method=method, steps=steps, batch_size=batch_size,
                         draws=draws, lr=lr, seed=seed, eval_every=eval_every, train_count=train_count,
                         val_count=val_count, judge_warmup=judge_warmup, augment=augment, threads=threads,
                         progress=progress)


def _finetune(init: Path, out: Path, scratch: Path, *, method: str, steps: int, batch_size: int, draws: int,
              lr: float | None, seed: int, eval_every: int, train_count: int | None, val_count: int,
              judge_warmup: int, augment: float, threads: int | None, progress: bool) -> dict[str, Any]:
    import torch

    from edge_caption.evaluation.metrics import CiderD
    from edge_caption.evaluation.scenes import split_samples
    from edge_caption.progress import reporter

    from . import families
    from .module_backend import ModuleBackend
    from .rollout import rollout, sequence_logprob
    from .train import _bar, _write, training_data, validate

    torch.set_num_threads(threads or max(1, len(os.sched_getaffinity(0))))
    torch.manual_seed(seed)
    say = reporter(progress, "train")
    model = families.load(init)
    for p in model.cnn.parameters():
        p.requires_grad_(False)
    images, captions = training_data(train_count, progress=say)
    val = list(split_samples("val", count=val_count))
    lr = lr or 5e-5
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    rng = np.random.default_rng([seed, 11])
    generator = torch.Generator().manual_seed(seed)
    max_new = int(model.generation_defaults()["max_new_tokens"])
    if method == "scst":
        say("document frequencies of the training references (the CIDEr-D reward's idf)")
        cider = CiderD(captions)
        score = _cider_reward(model, cider)
    else:
        score, judge_log = _judge(model, rng, torch, lr=1e-3)
        say(f"discriminator warm-up: {judge_warmup} steps")
        for _ in range(judge_warmup):
            refs, pixels = _images(images, captions, rng, batch_size, model)
            judge_log(refs, pixels, rollout(model, pixels, draws, max_new_tokens=max_new, generator=generator))

    log = (scratch / "train_log.jsonl").open("w")
    started = time.perf_counter()
    start_scores = validate(model, val, ModuleBackend)
    best = {**start_scores, "step": 0}
    _write(log, {"step": 0, "val": start_scores, "elapsed_s": 0.0})
    say(f"start: val CIDEr {start_scores['CIDEr']:.3f}")
    model.save(scratch)
    bar = _bar(steps, progress, f"finetune {method}")
    n_augment = round(batch_size * augment)
    for step in range(1, steps + 1):
        extra = None
        if n_augment:
            from .augment import augmented_batch

            extra = augmented_batch(seed, step, n_augment, 0, model.preprocess())
        refs, pixels = _images(images, captions, rng, batch_size - n_augment, model, extra)
        drawn = rollout(model, pixels, draws, max_new_tokens=max_new, generator=generator)
        greedy = rollout(model, pixels, 1, greedy=True, max_new_tokens=max_new)
        record = judge_log(refs, pixels, drawn) if method == "gan" else {}
        sampled_reward, greedy_reward = score(refs, pixels, drawn), score(refs, pixels, greedy)
        advantage = torch.as_tensor(advantages(sampled_reward, greedy_reward, draws), dtype=torch.float32)
        loss = -(advantage * sequence_logprob(model, pixels, drawn)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
        optimizer.step()
        bar(1, reward=f"{float(np.mean(sampled_reward)):.3f}")
        if step % 10 == 0 or step == steps:
            _write(log, {"step": step, "loss": round(float(loss), 5), "reward": round(float(np.mean(sampled_reward)), 5),
                         "greedy_reward": round(float(np.mean(greedy_reward)), 5), **record,
                         "elapsed_s": round(time.perf_counter() - started, 1)})
        if step % eval_every == 0 or step == steps:
            scores = validate(model, val, ModuleBackend)
            model.eval()
            _write(log, {"step": step, "val": scores, "elapsed_s": round(time.perf_counter() - started, 1)})
            say(f"step {step}: reward {np.mean(sampled_reward):.3f} (greedy {np.mean(greedy_reward):.3f}), "
                f"val CIDEr {scores['CIDEr']:.3f}, exact {scores['exact']:.3f}")
            if scores["CIDEr"] > best["CIDEr"]:
                best = {**scores, "step": step}
                model.save(scratch)
    bar(0, close=True)
    log.close()
    summary = {"family": model.family, "init": str(init), "finetune": method, "seed": seed, "steps": steps,
               "batch_size": batch_size, "draws": draws, "lr": lr, "augment": augment, "start_val": start_scores,
               "best_val": best,
               "improved": best["step"] > 0, "train_time_s": round(time.perf_counter() - started, 1),
               "torch": torch.__version__, "threads": torch.get_num_threads()}
    (scratch / "summary.json").write_text(json.dumps(summary, indent=1))
    say(f"best val CIDEr {best['CIDEr']:.3f} at step {best['step']} (start {start_scores['CIDEr']:.3f}); saved in {out}")
    return summary


def advantages(sampled: np.ndarray, greedy: np.ndarray, draws: int) -> np.ndarray:
    """Self-critical advantage of each drawn caption: its reward minus its image's greedy caption's.
    `sampled` [images x draws] (image-major), `greedy` [images]."""
    sampled, greedy = np.asarray(sampled, dtype=np.float64), np.asarray(greedy, dtype=np.float64)
    if sampled.shape != (greedy.shape[0] * draws,):
        raise ValueError(f"{sampled.shape[0]} drawn rewards for {greedy.shape[0]} images x {draws} draws")
    return sampled - np.repeat(greedy, draws)


def _images(images, captions, rng, size, model, extra=None):
    """(each image's reference captions, pixels) of `size` training images drawn at random, then
    `extra`'s (augment.py's BGR frames and captions)."""
    import torch

    from edge_caption.preprocess import preprocess

    index = rng.integers(0, len(images), size)
    frames, refs = [images[i] for i in index], [captions[i] for i in index]
    if extra is not None:
        frames, refs = frames + list(extra[0]), refs + list(extra[1])
    pixels = torch.from_numpy(preprocess([f[..., ::-1] for f in frames], model.preprocess()))
    return refs, pixels


def _cider_reward(model, cider):
    """score(refs, pixels, tokens) -> CIDEr-D of each token row against its image's references."""
    from .rollout import texts

    def score(refs, pixels, tokens):
        per_image = tokens.shape[0] // len(refs)
        return np.asarray(cider.scores([r for r in refs for _ in range(per_image)], texts(model, tokens)))
    return score


def _judge(model, rng, torch, *, lr: float):
    """(score, update): the discriminator's reward, and its training step on a batch of drawn captions."""
    from edge_caption.evaluation.scenes import encode_caption

    from .discriminator import Discriminator, discriminator_step, pad_to, reward
    from .families import EOS

    vocab = {w: i for i, w in enumerate(model.vocab)}
    judge = Discriminator(model.vocab_size, model.cnn(torch.zeros(1, 3, model.image_size, model.image_size)).shape[1])
    optimizer = torch.optim.Adam(judge.parameters(), lr=lr)

    def caption_of(options):
        return torch.tensor([*encode_caption(options[rng.integers(len(options))], vocab), EOS])

    def pooled(pixels):
        with torch.no_grad():
            return model.cnn(pixels).mean(dim=(2, 3))

    def update(refs, pixels, drawn):
        others = (np.arange(len(refs)) + rng.integers(1, len(refs))) % len(refs)   # never the image's own
        # another image's caption is a fake only where it does not describe this one (two empty views)
        keep = [i for i, j in enumerate(others) if not set(refs[i]) & set(refs[j])]
        image = pooled(pixels)
        real = pad_to([caption_of(r) for r in refs])
        mismatched = pad_to([caption_of(refs[others[i]]) for i in keep])
        return {f"judge_{k}": round(v, 4) for k, v in
                discriminator_step(judge, optimizer, image, real, drawn, mismatched, image[keep]).items()}

    def score(refs, pixels, tokens):
        return reward(judge, pooled(pixels), tokens).numpy()
    return score, update


def check_options(*, init: str | None, method: str | None, family: str | None, cell: str | None,
                  fit: str | None = None, empty: float | None = None, image_size: int | None = None) -> None:
    """The CLI's combinations of --init/--finetune/--family/--cell, each refusal saying what to do.

    `--init RUN` alone trains RUN further with cross-entropy; with `--finetune` it fine-tunes RUN."""
    if method and not init:
        raise OptionError(f"--finetune {method} fine-tunes a trained run: add --init RUN_DIR (a folder "
                          "`edge-caption train` wrote)")
    if method and method not in METHODS:
        raise OptionError(f"unknown --finetune {method!r}; choose one of: {', '.join(METHODS)}")
    if init and cell:
        raise OptionError("--cell comes from the --init run: drop it")
    if method and family:
        raise OptionError("--family comes from the --init run when fine-tuning: drop it")
    if method and fit:
        raise OptionError("--fit comes from the --init run when fine-tuning (its frames are the square train split): "
                          "drop it, or change it with a cross-entropy run: --init RUN --fit letterbox")
    if method and image_size is not None:
        raise OptionError("--image-size comes from the --init run when fine-tuning: drop it, or change it with a "
                          "cross-entropy run: --init RUN --image-size 128")
    if method and empty is not None:
        raise OptionError("--empty belongs to cross-entropy training; fine-tuning rewards captions of objects: "
                          "drop it (--augment still mixes in augmented object scenes)")
    if fit and fit not in FIT_MODES:
        raise OptionError(f"unknown --fit {fit!r}; choose one of: {', '.join(FIT_MODES)}")
    if not init and not family:
        raise OptionError("train needs --family (show-tell | show-attend-tell | cnn-transformer), or --init RUN_DIR "
                          "to go on from a trained run (with --finetune scst|gan to fine-tune it)")
    if cell and family != "show-attend-tell":
        raise OptionError(f"--cell chooses the recurrent cell of show-attend-tell; {family} has none to choose: "
                          "drop --cell or use --family show-attend-tell")
    if cell and cell not in ("lstm", "gru"):
        raise OptionError(f"unknown --cell {cell!r}; choose lstm or gru")


def run_family(init: str | Path) -> str:
    """The family of the run in `init`, as `edge-caption train` recorded it."""
    from . import families

    if not families.is_model_dir(init):
        raise OptionError(f"--init {init} is not a run written by `edge-caption train` (no config.json with "
                          "'edge_caption_family'); train one first: edge-caption train --family show-attend-tell "
                          "--out RUN")
    return families.load_config(Path(init))["edge_caption_family"]
