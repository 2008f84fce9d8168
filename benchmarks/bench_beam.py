"""How long does beam search's per-step host work take: the Cython core vs the Python reference vs the
same step of transformers' own beam search, at batch 8, 5 beams, a GPT-2 vocabulary (50,257)?

Bookkeeping (`*_us_per_step`) is everything from the per-row top-k candidates onward: merging them with
the beam order, picking the next beams, the finished hypotheses with length penalty, early stopping,
EOS / max length, the results of images that stop and dropping them from the batch. The host step
adds the vocabulary-wide work before it: log-softmax (numpy, shared), the processors and per-row top-k.
transformers' step starts from the same processed log-probs: add beam scores, top-k over beams x vocab
and its bookkeeping (`_get_top_k_continuations` ... `_beam_search_has_unfinished_sequences`); its
bookkeeping alone is that minus its top-k.

Inputs are random log-probs (seeded), EOS pushed up in a few random rows per step so that beams finish
at different steps; both cores get identical inputs and must return identical hypotheses (checked).
On a machine with a CUDA GPU and the kernels built it also times `ec_logsoftmax_topk` against
`torch.log_softmax` + `torch.topk` on the same tensor (see bench_beam_gpu in this file).

    python benchmarks/bench_beam.py [--json] [--episodes 6] [--max-new-tokens 24]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from timing import chart, machine, median, write  # noqa: E402

from edge_caption.decoding import beam_reference, core  # noqa: E402
from edge_caption.decoding.processors import log_softmax  # noqa: E402
from edge_caption.options import DecodeOptions  # noqa: E402

BATCH, BEAMS, VOCAB = 8, 5, 50_257
EOS = 50_256
OPTIONS = {
    "default": dict(),
    "early_stopping": dict(early_stopping=True),
    "never_lp2_ret3": dict(early_stopping="never", length_penalty=2.0, num_return_sequences=3),
    "processors": dict(repetition_penalty=1.2, no_repeat_ngram_size=3, min_new_tokens=4),
    "two_eos": dict(eos=(EOS, 13)),
}


class Inputs:
    """Seeded per-step logits for the 8 images: a pool of random rows, EOS pushed up in some rows."""

    def __init__(self, seed: int, pool: int = 4):
        rng = np.random.default_rng(seed)
        self.pool = [(rng.standard_normal((BATCH * BEAMS, VOCAB)) * 2).astype(np.float32) for _ in range(pool)]
        self.seed = seed

    def logits(self, episode: int, step: int, images: np.ndarray, eos: tuple[int, ...]) -> np.ndarray:
        rng = np.random.default_rng((self.seed, episode, step))
        rows = (images[:, None] * BEAMS + np.arange(BEAMS)).reshape(-1)
        x = self.pool[(episode + step) % len(self.pool)][rows]
        push = rng.random(BATCH * BEAMS)[rows] < 0.15
        x[np.ix_(push, list(eos))] += rng.uniform(6.0, 12.0, size=(int(push.sum()), 1)).astype(np.float32)
        return x


def run_core(cls, options: DecodeOptions, eos: tuple[int, ...], inputs: Inputs, episodes: int):
    """The search in a loop: per step (active images, log-softmax, processors, candidates, bookkeeping) in
    microseconds; the hypotheses per episode; and every step's candidates, for `replay`."""
    steps, found, recorded = [], [], []
    prompt, eos_ids = np.array([EOS], dtype=np.int64), np.array(eos, dtype=np.int64)
    for episode in range(episodes):
        beams = cls(BATCH, prompt, eos_ids, options)
        images = np.arange(BATCH)
        results, candidates = {}, []
        for step in range(options.max_new_tokens):
            logits = inputs.logits(episode, step, images, eos)
            t0 = time.perf_counter_ns()
            logprobs = log_softmax(logits)
            t1 = time.perf_counter_ns()
            beams.process(logprobs)
            t2 = time.perf_counter_ns()
            scores, tokens = beams.candidates(logprobs)
            t3 = time.perf_counter_ns()
            done = _bookkeeping(beams, images, results)
            t4 = time.perf_counter_ns()
            steps.append((len(images), (t1 - t0) / 1e3, (t2 - t1) / 1e3, (t3 - t2) / 1e3, (t4 - t3) / 1e3))
            candidates.append((scores.copy(), tokens.copy()))
            if done is None:
                break
            images = done
        found.append(results)
        recorded.append(candidates)
    return steps, found, recorded


def _bookkeeping(beams, images: np.ndarray, results: dict, candidates=()) -> np.ndarray | None:
    """advance(), then the results of the images that stopped and the batch without them (None: all
    stopped). What the decoding loop does per step after the candidates, the decoder state aside."""
    _, stopped = beams.advance(*candidates)
    if not beams.n_stopped:
        return images
    for i in np.flatnonzero(stopped):
        results[int(images[i])] = beams.hypotheses(int(i))
    if beams.n_stopped == len(images):
        return None
    keep = np.flatnonzero(~stopped)
    beams.keep(keep)
    return images[keep]


def replay(cls, options: DecodeOptions, eos: tuple[int, ...], recorded: list, repeats: int):
    """The bookkeeping alone, on recorded candidates (warm caches): per step (active images, microseconds)."""
    prompt, eos_ids = np.array([EOS], dtype=np.int64), np.array(eos, dtype=np.int64)
    steps = []
    for _ in range(repeats):
        for episode in recorded:
            beams = cls(BATCH, prompt, eos_ids, options)
            images, results = np.arange(BATCH), {}
            for candidates in episode:
                t0 = time.perf_counter_ns()
                done = _bookkeeping(beams, images, results, candidates)
                steps.append((len(images), (time.perf_counter_ns() - t0) / 1e3))
                if done is None:
                    break
                images = done
    return steps


class TransformersStep:
    """transformers' beam step (5.x, vectorised), its own functions on torch tensors, for one episode."""

    def __init__(self, options: DecodeOptions, eos: tuple[int, ...]):
        import torch
        from transformers.generation.stopping_criteria import (EosTokenCriteria, MaxLengthCriteria,
                                                               StoppingCriteriaList)
        from transformers.generation.utils import GenerationMixin

        self.torch, self.gm = torch, object.__new__(GenerationMixin)
        b, nb, self.prompt_len = BATCH, BEAMS, 1
        self.max_len = self.prompt_len + options.max_new_tokens
        self.keep_k = max(2, 1 + len(eos)) * nb
        self.criteria = StoppingCriteriaList([MaxLengthCriteria(self.max_len), EosTokenCriteria(torch.tensor(eos))])
        self.top_mask = torch.arange(self.keep_k) < nb
        self.lp, self.es = options.length_penalty, options.early_stopping
        self.running = torch.full((b, nb, self.max_len), EOS, dtype=torch.int64)
        self.sequences = self.running.clone()
        self.running_scores = torch.zeros((b, nb))
        self.running_scores[:, 1:] = -1e9
        self.scores = torch.full((b, nb), -1e9)
        self.finished = torch.zeros((b, nb), dtype=torch.bool)
        self.unsatisfied = torch.ones((b, 1), dtype=torch.bool)
        self.running_idx = torch.full((b, nb, self.max_len - self.prompt_len), -1, dtype=torch.int32)
        self.beam_idx = self.running_idx.clone()
        self.cur_len = self.prompt_len

    def topk(self, logprobs):
        acc = (logprobs.view(BATCH, BEAMS, VOCAB) + self.running_scores[:, :, None]).reshape(BATCH, -1)
        return self.torch.topk(acc, k=self.keep_k)

    def bookkeeping(self, topk_log_probs, topk_indices) -> bool:
        """Everything after the top-k; True while the search goes on."""
        gm, b, nb, cur_len, prompt_len = self.gm, BATCH, BEAMS, self.cur_len, self.prompt_len
        # the rest of GenerationMixin._get_top_k_continuations after its topk (do_sample=False), verbatim
        topk_current_beam_indices = topk_indices // VOCAB
        topk_running_beam_indices = gm._gather_beams(self.running_idx, topk_current_beam_indices)
        topk_running_sequences = gm._gather_beams(self.running, topk_current_beam_indices)
        topk_ids = topk_indices % VOCAB
        topk_running_sequences[:, :, cur_len] = topk_ids
        batch_offset = self.torch.arange(b).view(-1, 1) * nb
        topk_running_beam_indices[:, :, cur_len - prompt_len] = topk_current_beam_indices + batch_offset
        # then _beam_search's own step
        hits = self.criteria(gm._flatten_beam_dim(topk_running_sequences[:, :, : cur_len + 1]), ())
        hits = gm._unflatten_beam_dim(hits, b, self.keep_k)
        self.running, self.running_scores, self.running_idx = gm._get_running_beams_for_next_iteration(
            topk_log_probs, topk_running_sequences, topk_running_beam_indices, hits, nb)
        self.sequences, self.scores, self.beam_idx, self.finished = gm._update_finished_beams(
            self.sequences, topk_running_sequences, self.scores, topk_log_probs, self.beam_idx,
            topk_running_beam_indices, self.unsatisfied, self.finished, hits, self.top_mask, nb, cur_len,
            prompt_len, self.lp, self.es)
        self.cur_len = cur_len = cur_len + 1
        self.unsatisfied = gm._check_early_stop_heuristic(
            self.unsatisfied, self.running_scores, self.scores, self.finished, cur_len, self.max_len, prompt_len,
            self.es, self.lp)
        return bool(gm._beam_search_has_unfinished_sequences(self.unsatisfied, self.finished, hits, self.es))


def run_transformers(options: DecodeOptions, eos: tuple[int, ...], inputs: Inputs, episodes: int, repeats: int):
    """In the loop: per step (top-k us, bookkeeping us); then the bookkeeping replayed on recorded top-ks.

    One torch thread, as our cores use one: on tiny tensors threads only add hand-offs (and, on a
    shared 2-core machine, waits for a busy core)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run_transformers(options, eos, inputs, episodes, repeats)
    finally:
        torch.set_num_threads(threads)


def _run_transformers(options: DecodeOptions, eos: tuple[int, ...], inputs: Inputs, episodes: int, repeats: int):
    import torch

    steps, recorded = [], []
    for episode in range(episodes):
        hf, tops = TransformersStep(options, eos), []
        while True:
            logprobs = torch.from_numpy(log_softmax(inputs.logits(episode, hf.cur_len - 1, np.arange(BATCH), eos)))
            t0 = time.perf_counter_ns()
            top = hf.topk(logprobs)
            t1 = time.perf_counter_ns()
            go_on = hf.bookkeeping(*top)
            t2 = time.perf_counter_ns()
            steps.append(((t1 - t0) / 1e3, (t2 - t1) / 1e3))
            tops.append(top)
            if not go_on:
                break
        recorded.append(tops)
    replayed = []
    for _ in range(repeats):
        for tops in recorded:
            hf = TransformersStep(options, eos)
            for top in tops:
                t0 = time.perf_counter_ns()
                hf.bookkeeping(*top)
                replayed.append((time.perf_counter_ns() - t0) / 1e3)
    return steps, replayed


def bench_beam_gpu(report: dict) -> None:
    """Our fused kernel vs torch.log_softmax + torch.topk on the same [40, 50,257] logits (GPU only)."""
    try:
        import torch
    except ImportError:
        report["gpu"] = "skipped: torch is not installed"
        return
    if not torch.cuda.is_available():
        report["gpu"] = "skipped: no CUDA GPU"
        return
    from edge_caption.decoding import kernels

    if kernels.load() is None:
        report["gpu"] = "skipped: the CUDA kernels are not built (nvcc at install time)"
        return
    lib = kernels.load()
    rows, k = BATCH * BEAMS, 2 * BEAMS
    logits = torch.randn(rows, VOCAB, device="cuda") * 2
    add = torch.zeros(rows, device="cuda")
    out_v = torch.empty(rows, k, device="cuda")
    out_i = torch.empty(rows, k, dtype=torch.int64, device="cuda")
    scratch = torch.empty_like(logits)
    stream = torch.cuda.current_stream().cuda_stream

    def ours():
        lib.logsoftmax_topk(logits.data_ptr(), scratch.data_ptr(), rows, VOCAB, add.data_ptr(), k,
                            out_v.data_ptr(), out_i.data_ptr(), stream=stream)

    def torchs():
        torch.topk(torch.log_softmax(logits, -1) + add[:, None], k)

    timings = {}
    for name, fn in (("kernel", ours), ("torch", torchs)):
        for _ in range(20):
            fn()
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(200):
            fn()
        end.record()
        torch.cuda.synchronize()
        timings[name] = start.elapsed_time(end) * 1e3 / 200
    report["gpu"] = {"device": torch.cuda.get_device_name(), "kernel_us": timings["kernel"],
                     "torch_log_softmax_topk_us": timings["torch"], "speedup": timings["torch"] / timings["kernel"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="write results/beam_cpu.json (and a PNG chart)")
    parser.add_argument("--episodes", type=int, default=6)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=20, help="replays of the recorded episodes (python: 1/4)")
    parser.add_argument("--no-transformers", action="store_true", help="skip transformers' step (no torch)")
    args = parser.parse_args()
    fast = core.beams_class("cython")
    inputs = Inputs(seed=0)
    report: dict = {"config": {"batch": BATCH, "beams": BEAMS, "vocab": VOCAB, "episodes": args.episodes,
                               "max_new_tokens": args.max_new_tokens,
                               "repeats": args.repeats,
                               "statistic": "median over steps with all 8 images active",
                               "replayed": "advance + results + dropping stopped images, on the recorded "
                                           "candidates of the loop, one step after another (warm caches)",
                               "in_loop": "the same, timed inside the simulated decoding loop right after the "
                                          "8 x 5 x 50,257 vocabulary-wide pass (cold caches)"},
                    "options": {}}
    print("bookkeeping us per step at full batch (median): replayed on recorded candidates | in the loop\n"
          f"{'options':16} {'cython':>7} {'python':>7} {'x':>5} {'hf':>7} | {'cython':>7} {'python':>7} {'x':>5} "
          f"{'hf':>7} | host step cy / py / hf-from-logprobs")
    for name, extra in OPTIONS.items():
        extra = dict(extra)
        eos = tuple(extra.pop("eos", (EOS,)))
        options = DecodeOptions(num_beams=BEAMS, max_new_tokens=args.max_new_tokens, **extra)
        cy_steps, cy_found, recorded = run_core(fast, options, eos, inputs, args.episodes)
        py_steps, py_found, _ = run_core(beam_reference.Beams, options, eos, inputs, args.episodes)
        assert cy_found == py_found, f"{name}: the Cython core and the Python reference disagree"
        cy_replay = replay(fast, options, eos, recorded, args.repeats)
        py_replay = replay(beam_reference.Beams, options, eos, recorded, max(1, args.repeats // 4))
        full = lambda steps, col: [s[col] for s in steps if s[0] == BATCH]  # noqa: E731
        row = {
            "cython_us_per_step": median(full(cy_replay, 1)),
            "python_us_per_step": median(full(py_replay, 1)),
            "cython_us_per_step_in_loop": median(full(cy_steps, 4)),
            "python_us_per_step_in_loop": median(full(py_steps, 4)),
            "cython_us_per_step_in_loop_mean_all_steps": float(np.mean([s[4] for s in cy_steps])),
            "python_us_per_step_in_loop_mean_all_steps": float(np.mean([s[4] for s in py_steps])),
            "log_softmax_us": median(full(cy_steps, 1)),
            "cython_processors_us": median(full(cy_steps, 2)), "python_processors_us": median(full(py_steps, 2)),
            "cython_candidates_us": median(full(cy_steps, 3)), "python_candidates_us": median(full(py_steps, 3)),
            "steps_in_loop": len(cy_steps), "steps_in_loop_at_full_batch": len(full(cy_steps, 4)),
            "steps_replayed_at_full_batch": len(full(cy_replay, 1)),
        }
        row["speedup_vs_python"] = row["python_us_per_step"] / row["cython_us_per_step"]
        row["speedup_vs_python_in_loop"] = row["python_us_per_step_in_loop"] / row["cython_us_per_step_in_loop"]
        row["cython_host_us_per_step"] = sum(median(full(cy_steps, c)) for c in (1, 2, 3, 4))
        row["python_host_us_per_step"] = sum(median(full(py_steps, c)) for c in (1, 2, 3, 4))
        row["cython_from_logprobs_us_per_step"] = row["cython_candidates_us"] + row["cython_us_per_step_in_loop"]
        if not args.no_transformers:
            hf_steps, hf_replay = run_transformers(options, eos, inputs, args.episodes, max(1, args.repeats // 4))
            row["transformers_us_per_step"] = median(hf_replay)
            row["transformers_us_per_step_in_loop"] = median([k for _, k in hf_steps])
            row["transformers_topk_us"] = median([t for t, _ in hf_steps])
            row["transformers_from_logprobs_us_per_step"] = row["transformers_topk_us"] + \
                row["transformers_us_per_step_in_loop"]
            row["speedup_vs_transformers"] = row["transformers_us_per_step"] / row["cython_us_per_step"]
        report["options"][name] = row
        nan = float("nan")
        print(f"{name:16} {row['cython_us_per_step']:7.1f} {row['python_us_per_step']:7.0f} "
              f"{row['speedup_vs_python']:4.0f}x {row.get('transformers_us_per_step', nan):7.0f} | "
              f"{row['cython_us_per_step_in_loop']:7.1f} {row['python_us_per_step_in_loop']:7.0f} "
              f"{row['speedup_vs_python_in_loop']:4.0f}x {row.get('transformers_us_per_step_in_loop', nan):7.0f} | "
              f"{row['cython_host_us_per_step']:5.0f} / {row['python_host_us_per_step']:5.0f} / "
              f"{row.get('transformers_from_logprobs_us_per_step', nan):5.0f}")
    rows = list(report["options"].values())
    for suffix in ("", "_in_loop"):
        report["cython_us_per_step" + suffix] = max(r["cython_us_per_step" + suffix] for r in rows)
        report["python_us_per_step" + suffix] = min(r["python_us_per_step" + suffix] for r in rows)
        report["speedup_vs_python" + suffix] = min(r["speedup_vs_python" + suffix] for r in rows)
    report["summary"] = ("top-level figures are the worst case over the options: the slowest cython, the fastest "
                         "python, the smallest speedup")
    met = {suffix or "_replayed": report["cython_us_per_step" + suffix] <= 50 and
           report["speedup_vs_python" + suffix] >= 20 for suffix in ("", "_in_loop")}
    report["acceptance"] = {"bookkeeping_us_max": 50, "speedup_min": 20, "met_replayed": met["_replayed"],
                            "met_in_loop": met["_in_loop"]}
    for suffix, label in (("", "replayed"), ("_in_loop", "in the loop")):
        print(f"bookkeeping {label}, worst option: cython {report['cython_us_per_step' + suffix]:.1f} us/step, "
              f"speedup vs python >= {report['speedup_vs_python' + suffix]:.0f}x -> "
              f"{'meets' if met[suffix or '_replayed'] else 'MISSES'} <= 50 us and >= 20x")
    bench_beam_gpu(report)
    if isinstance(report.get("gpu"), dict):
        g = report["gpu"]
        print(f"GPU {g['device']}: kernel {g['kernel_us']:.1f} us vs torch {g['torch_log_softmax_topk_us']:.1f} us")
    elif report.get("gpu"):
        print(f"GPU: {report['gpu']}")
    if args.json:
        # a GPU run keeps the CPU machine's results: its host numbers are another CPU's
        result = "beam_gpu" if isinstance(report.get("gpu"), dict) else "beam_cpu"
        print(f"wrote {write(result, report)}")
        try:
            groups = {name: {"cython": r["cython_us_per_step"], "python": r["python_us_per_step"],
                             **({"transformers": r["transformers_us_per_step"]} if "transformers_us_per_step" in r
                                else {})}
                      for name, r in report["options"].items()}
            title = f"beam bookkeeping per step, batch {BATCH} x {BEAMS} beams, vocab {VOCAB:,} ({machine()['cpu']})"
            print(f"wrote {chart(result, groups, ylabel='us per step (bookkeeping)', log=True, title=title)}")
        except ImportError:
            print("matplotlib is not installed: no chart (pip install -e '.[bench]')")


if __name__ == "__main__":
    main()
