"""generate()'s greedy and beam search as tensor operations that stay where the decoder step runs.

The numpy loop (`edge_caption.decoding`) is the reference; this is the same search written the way
transformers 5.x writes its own (`GenerationMixin._beam_search`, `_sample`), op for op, so that on
the same device the same float operations run in the same order: log-softmax, the processors
(repetition penalty, n-gram blocking, min new tokens, each as its logits processor computes it),
the beam scores, one top-k over beams x vocabulary, the finished hypotheses with the length
penalty, the early-stop heuristic. Nothing here reads a tensor's value on the host: every
decision is a tensor, so a whole caption can be captured into CUDA graphs and replayed, and the
host reads the state once per chunk of steps (loop.py), through `pack()`'s one arena.

Images are never dropped from the batch (shapes stay fixed for the graphs; generate() keeps
computing them too, and a stopped image's hypotheses no longer change), and the state is the one
`decoding/contract.py` declares.

Per step the caller gives `select(g, logits)` the step's float32 logits [rows, V] for the g-th new
token (g counts from 0); it returns the next step's input ids [rows, 1] and the row each new row
continues (the cache reorder, fed to the next step as `beam_index`). What depends on g (the column
written, the length penalty's divisor, whether EOS is banned) comes in a `Step`; the rest is one
`_core`, compiled once per plan on a GPU. The history-dependent processors (repetition penalty,
n-gram blocking) slice the history to the step's length and so run before the core, uncompiled.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from ...decoding.contract import SearchPlan
from .compiled import Compiled

NEG = -1.0e9
DTYPES = {"int64": torch.int64, "float32": torch.float32, "float64": torch.float64, "bool": torch.bool}


def arena_layout(plan: SearchPlan) -> tuple[int, dict[str, int]]:
    """Bytes of the result arena (the state the host reads) and each tensor's byte offset, 8-byte
    aligned for the int64 views."""
    offsets, size = {}, 0
    for spec in plan.state_spec():
        if spec.name in plan.result_names():
            offsets[spec.name] = size
            size += -(-math.prod(plan.shape(spec)) * DTYPES[spec.dtype].itemsize // 8) * 8
    return size, offsets


def result_views(arena: torch.Tensor, plan: SearchPlan) -> dict[str, torch.Tensor]:
    """The result tensors as views into a byte arena (the host's copy of the device's)."""
    _, offsets = arena_layout(plan)
    views = {}
    for spec in plan.state_spec():
        if spec.name in offsets:
            dtype, shape = DTYPES[spec.dtype], plan.shape(spec)
            start = offsets[spec.name]
            views[spec.name] = arena[start: start + math.prod(shape) * dtype.itemsize].view(dtype).view(shape)
    return views


def eos_tensor(plan: SearchPlan, device: torch.device) -> torch.Tensor:
    return torch.tensor(plan.eos, dtype=torch.int64, device=device)


def log_softmax(logits: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.log_softmax(logits, dim=-1)


class Step:
    """What changes from one new token to the next (the g-th), as the core takes it: tensors when the
    core is compiled (one compiled core serves every step), plain numbers otherwise."""

    def __init__(self, plan: SearchPlan, g: int, device: torch.device, tensors: bool):
        o, prompt_len = plan.options, len(plan.prompt)
        cur_len = prompt_len + g
        self.g, self.cur_len = g, cur_len
        best_len = plan.max_len - prompt_len if o.early_stopping == "never" and o.length_penalty > 0.0 \
            else cur_len + 1 - prompt_len
        self.column = torch.full((1, 1, 1), cur_len, dtype=torch.int64, device=device)
        self.last = torch.full((1, 1), cur_len + 1 >= plan.max_len, dtype=torch.bool, device=device)
        self.length = torch.full((1, 1), g + 1, dtype=torch.int64, device=device)
        self.ban_eos = torch.full((1, 1), g < o.min_new_tokens, dtype=torch.bool, device=device)
        self.length_scale = _divisor((g + 1) ** o.length_penalty, device, tensors)
        self.best_scale = _divisor(best_len ** o.length_penalty, device, tensors)


def _divisor(value: float, device: torch.device, tensor: bool) -> float | torch.Tensor:
    """How `x / value` is computed, as generate() computes it with a Python number: on a GPU,
    PyTorch multiplies by the float32 reciprocal; on a CPU it divides. A tensor holds that reciprocal
    (multiply) or the divisor (divide) for the compiled core."""
    if not tensor:
        return value
    one = torch.tensor(1.0, dtype=torch.float32)
    scale = one / torch.tensor(value, dtype=torch.float32) if device.type == "cuda" else torch.tensor(value)
    return scale.to(device)


def _divide(x: torch.Tensor, by: float | torch.Tensor) -> torch.Tensor:
    if not isinstance(by, torch.Tensor):
        return x / by
    return x * by if by.device.type == "cuda" else x / by


def process_history(scores: torch.Tensor, history: torch.Tensor, plan: SearchPlan) -> torch.Tensor:
    """generate()'s history-dependent processors in its order (repetition penalty, then n-gram
    blocking), on [rows, V] scores; `history` [rows, cur_len] is every token so far, prompt included.
    Each is transformers' own computation. Min new tokens follows, in the core (`_ban_eos`)."""
    o = plan.options
    vocab = scores.shape[-1]
    if o.repetition_penalty != 1.0:
        # ids past the LM head (a BLIP prompt's) go to a spare column that is dropped afterwards
        ids = history.clamp(max=vocab)
        padded = torch.nn.functional.pad(scores, (0, 1))
        seen = torch.gather(padded, 1, ids)
        seen = torch.where(seen < 0, seen * o.repetition_penalty, seen / o.repetition_penalty)
        scores = padded.scatter(1, ids, seen)[..., :vocab]
    n = o.no_repeat_ngram_size
    if n > 0 and history.shape[1] >= n:
        prefix = history[:, history.shape[1] + 1 - n:]
        windows = history.unfold(dimension=1, size=n, step=1)
        matches = (windows[..., :-1] == prefix.unsqueeze(1)).all(dim=-1)
        banned = scores.new_zeros((scores.shape[0], vocab + 1), dtype=torch.bool)
        banned.scatter_(1, torch.where(matches, windows[..., -1].clamp(max=vocab), vocab), True)
        scores = scores.masked_fill(banned[:, :vocab], -float("inf"))
    return scores


def _ban_eos(scores: torch.Tensor, eos: torch.Tensor, ban: torch.Tensor) -> torch.Tensor:
    """Min new tokens: EOS at -inf while `ban` holds (where() leaves every other score as it is)."""
    is_eos = torch.isin(torch.arange(scores.shape[-1], device=scores.device), eos)
    return torch.where(is_eos & ban, -float("inf"), scores)


def _gather_beams(tensor: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """tensor [B, k, ...] gathered along axis 1 by index [B, m] (transformers' _gather_beams)."""
    while index.dim() < tensor.dim():
        index = index.unsqueeze(-1)
    return torch.gather(tensor, 1, index.expand(*index.shape[:2], *tensor.shape[2:]))


class _Search:
    """What greedy and beam search share: the state arena, the per-step constants, the core."""

    def __init__(self, plan: SearchPlan, device: torch.device, compile: dict[str, Any] | None = None):
        self.plan, self.device = plan, device
        # separate tensors for the steps (compiled code mutates them), packed into one arena for a read
        self.state = {spec.name: torch.zeros(plan.shape(spec), dtype=DTYPES[spec.dtype], device=device)
                      for spec in plan.state_spec()}
        self.arena = torch.zeros(arena_layout(plan)[0], dtype=torch.uint8, device=device)
        self._packed = [(self.state[name], view) for name, view in result_views(self.arena, plan).items()]
        self.eos = eos_tensor(plan, device)
        self.prompt = torch.tensor(plan.prompt, dtype=torch.int64, device=device)
        self.steps = [Step(plan, g, device, compile is not None) for g in range(plan.options.max_new_tokens)]
        o = plan.options
        self.history_processors = o.repetition_penalty != 1.0 or o.no_repeat_ngram_size > 0
        # the core is the same computation at every step: compiled once per plan, it fuses the search's
        # few dozen small ops into a handful of kernels
        self.core = Compiled(self._core, fullgraph=True, options=compile) if compile is not None else self._core
        self.reset()

    def pack(self) -> None:
        """Copy the result into the arena, which the host then reads in one copy."""
        for tensor, view in self._packed:
            view.copy_(tensor)

    def select(self, g: int, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Choose the g-th new token(s) from the step's float32 logits [rows, V]: (the next step's
        input ids [rows, 1], the row of this step each continues)."""
        step = self.steps[g]
        x = logits
        if self.history_processors:
            x = process_history(self._before_core(logits), self._history()[:, : step.cur_len], self.plan)
        return self.core(x, step.column, step.last, step.length, step.ban_eos, step.length_scale, step.best_scale)


class BeamSearch(_Search):
    """Beam search's state (contract.BEAM_STATE) and one step of it."""

    def __init__(self, plan: SearchPlan, device: torch.device, compile: dict[str, Any] | None = None):
        self.top_mask = torch.arange(plan.keep_k, device=device) < plan.beams
        self.batch_offset = torch.arange(plan.images, device=device).view(-1, 1) * plan.beams
        super().__init__(plan, device, compile)

    def reset(self) -> None:
        """Back to the start of a caption, in place (the tensors keep their addresses for the graphs)."""
        p, s = self.plan, self.state
        s["running"].fill_(0)
        s["running"][:, :, : len(p.prompt)] = self.prompt
        s["running_scores"].fill_(0.0)
        s["running_scores"][:, 1:] = NEG
        s["finished"].fill_(0)
        s["finished_len"].fill_(0)
        s["finished_scores"].fill_(NEG)
        s["is_finished"].fill_(False)
        s["unsatisfied"].fill_(True)
        s["done"].fill_(False)

    def _history(self) -> torch.Tensor:
        p = self.plan
        return self.state["running"].view(p.images * p.beams, p.max_len)

    def _before_core(self, logits: torch.Tensor) -> torch.Tensor:
        return log_softmax(logits)          # beam search processes log-probs

    def _core(self, x, column, last, length, ban_eos, length_scale, best_scale):
        p, s, o = self.plan, self.state, self.plan.options
        b, nb, kk = p.images, p.beams, p.keep_k
        vocab = x.shape[-1]
        log_probs = x if self.history_processors else log_softmax(x)
        if o.min_new_tokens > 0:
            log_probs = _ban_eos(log_probs, self.eos, ban_eos)
        log_probs = log_probs.view(b, nb, vocab) + s["running_scores"][:, :, None]
        log_probs = log_probs.reshape(b, nb * vocab)
        top_log_probs, top_index = torch.topk(log_probs, k=kk)
        top_beams = top_index // vocab
        top_ids = top_index % vocab
        top_sequences = _gather_beams(s["running"], top_beams)
        top_sequences.scatter_(2, column.expand(b, kk, 1), top_ids.unsqueeze(-1))
        hits = torch.isin(top_ids, self.eos) | last

        # the best nb candidates that did not stop run on
        top_running = top_log_probs + hits.to(torch.float32) * NEG
        nxt = torch.topk(top_running, k=nb)[1]
        s["running"].copy_(_gather_beams(top_sequences, nxt))
        s["running_scores"].copy_(_gather_beams(top_running, nxt))
        source_rows = (_gather_beams(top_beams, nxt) + self.batch_offset).view(-1)
        next_ids = _gather_beams(top_ids, nxt).reshape(-1, 1)

        # candidates among the top nb that stopped may join the finished hypotheses
        just = hits & self.top_mask[None, :]
        cand = _divide(top_log_probs, length_scale)
        full = torch.all(s["is_finished"], dim=-1, keepdim=True) & (o.early_stopping is True)
        cand = cand + full.to(torch.float32) * NEG
        cand = cand + (~s["unsatisfied"]).to(torch.float32) * NEG
        cand = cand + (~just) * NEG
        merged_scores = torch.cat((s["finished_scores"], cand), dim=1)
        pick = torch.topk(merged_scores, k=nb)[1]
        s["finished"].copy_(_gather_beams(torch.cat((s["finished"], top_sequences), dim=1), pick))
        s["finished_len"].copy_(_gather_beams(torch.cat((s["finished_len"], length.expand(b, kk)), dim=1), pick))
        s["finished_scores"].copy_(_gather_beams(merged_scores, pick))
        s["is_finished"].copy_(_gather_beams(torch.cat((s["is_finished"], just), dim=1), pick))

        # generate()'s early-stop heuristic and its loop condition
        best_running = _divide(s["running_scores"][:, :1], best_scale)
        worst = torch.where(s["is_finished"], torch.min(s["finished_scores"], dim=1, keepdim=True)[0], NEG)
        s["unsatisfied"].copy_(s["unsatisfied"] & torch.any(best_running > worst, dim=-1, keepdim=True))
        open_beams = ~(torch.all(s["is_finished"]) & (o.early_stopping is True))
        s["done"].copy_(~(torch.any(s["unsatisfied"]) & open_beams & ~torch.all(hits)).view(1))
        return next_ids, source_rows


class GreedySearch(_Search):
    """Greedy search's state (contract.GREEDY_STATE) and one step of it."""

    def __init__(self, plan: SearchPlan, device: torch.device, compile: dict[str, Any] | None = None):
        self.rows = torch.arange(plan.images, device=device)
        super().__init__(plan, device, compile)

    def reset(self) -> None:
        s = self.state
        s["history"].fill_(0)
        s["history"][:, : len(self.plan.prompt)] = self.prompt
        s["length"].fill_(0)
        s["logprob_sum"].fill_(0.0)
        s["finished"].fill_(False)
        s["done"].fill_(False)

    def _history(self) -> torch.Tensor:
        return self.state["history"]

    def _before_core(self, logits: torch.Tensor) -> torch.Tensor:
        return logits                       # greedy processes the raw logits

    def _core(self, scores, column, last, length, ban_eos, length_scale, best_scale):
        s = self.state
        if self.plan.options.min_new_tokens > 0:
            scores = _ban_eos(scores, self.eos, ban_eos)
        tokens = torch.argmax(scores, dim=-1)
        log_prob = log_softmax(scores).gather(1, tokens[:, None])[:, 0]
        running = ~s["finished"]
        s["logprob_sum"].add_(torch.where(running, log_prob.to(torch.float64), 0.0))
        s["length"].add_(running.to(torch.int64))
        # a finished row's later tokens land past its length, where nothing reads them
        s["history"].scatter_(1, column[0].expand(len(tokens), 1), tokens[:, None])
        s["finished"].copy_(s["finished"] | torch.isin(tokens, self.eos) | last[0])
        s["done"].copy_(torch.all(s["finished"]).view(1))
        return tokens[:, None], self.rows


def make_search(plan: SearchPlan, device: torch.device, compile: dict[str, Any] | None = None
                ) -> BeamSearch | GreedySearch:
    """`compile`: None (eager), or the Inductor options the search's core is compiled with."""
    return (GreedySearch if plan.beams == 1 else BeamSearch)(plan, device, compile)


def hypotheses(plan: SearchPlan, state: dict) -> list[list[tuple[tuple[int, ...], float, None]]]:
    """The search's result from its state read back to the host (numpy arrays), per image best first,
    as decoding.beam_search / greedy_search return it."""
    start = len(plan.prompt)
    if plan.beams == 1:
        return [[(tuple(int(t) for t in state["history"][i, start: start + state["length"][i]]),
                  float(state["logprob_sum"][i] / state["length"][i]), None)] for i in range(plan.images)]
    found = []
    for i in range(plan.images):
        found.append([(tuple(int(t) for t in state["finished"][i, j, start: start + state["finished_len"][i, j]]),
                       float(state["finished_scores"][i, j]), None)
                      for j in range(plan.options.num_return_sequences)])
    return found
