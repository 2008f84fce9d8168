"""The TensorRT-shaped decoder step: `decoder_step_static.onnx`, the same step with static shapes.

What TensorRT needs to replay a step from a CUDA graph, and what keeps the host's per-step work to a
few numbers per beam:
- the self-attention cache is max-length ([rows, heads, C, head_dim], C fixed per engine); the new
  token's K/V are written at `position` and later slots are masked, so no shape changes between steps;
- the beam reorder is a Gather by `beam_index` inside the graph, on the previous step's cache, so the
  runtime never copies a cache: it alternates two buffer sets by address (the output of one step is
  the input of the next). The same index drops finished images (fewer rows out than in);
- cross-attention K/V stay one per image, shared by its beams (as in the dynamic step);
- log-softmax, the beam scores and a per-row top-k run in the graph: only [rows, top_k] scores and ids
  reach the host. Hugging Face's beam search takes the global top max(2, 1 + n_eos) x beams of
  beams x vocab, which lies inside the union of each row's own top-k of the same size (see
  decoding/beam_reference.py), so `top_k` = max(2, 1 + n_eos) x MAX_BEAMS serves up to MAX_BEAMS
  beams. `logits` stay an output for the steps where a history-dependent processor (repetition
  penalty, n-gram blocking, min length) must see the whole row first.

It is exported only for families whose state is a KV cache; an RNN's state is static already.
ONNX Runtime runs this graph too (`OnnxRuntimeBackend(bundle, static_step=True)`), which is how its
tokens are proven equal to `generate()`'s without TensorRT.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from edge_caption.errors import ExportError
from edge_caption.manifest import STATIC_INPUTS, STATIC_OUTPUTS, StaticStepSpec

from .attention import SlotCache

STATIC_FILE = "decoder_step_static.onnx"
MAX_BEAMS = 8
# example sizes: every dynamic axis >= 2 and distinct where the axes differ (P rows in, N rows out)
_B, _P, _N, _C = 2, 6, 4, 5


def supported(split) -> str | None:
    """Why `split` gets no static step (None: it does)."""
    if not split.state or any(s.grow_axis is None or s.init != "empty" for s in split.state):
        return f"the {split.family} family's state is not a KV cache (its step has static shapes already)"
    if any(s.grow_axis != 2 for s in split.state):
        return f"the {split.family} family's cache grows along axis {split.state[0].grow_axis}, not [N, heads, T, d]'s 2"
    if split.tokens_per_step not in (None, 1):
        return f"the {split.family} family's step takes {split.tokens_per_step} tokens"
    if not hasattr(split.step, "run"):
        return f"the {split.family} step has no run(input_ids, positions, memory, past, cache)"
    return None


def top_k_for(split) -> int:
    return min(split.vocab_size, max(2, 1 + len(split.eos_token_ids)) * MAX_BEAMS)


class StaticStep(torch.nn.Module):
    """forward(input_ids, position, beam_index, beam_scores, *memory, *past) ->
    (topk_scores, topk_ids, logits, *present): see the module docstring."""

    def __init__(self, step: torch.nn.Module, num_memory: int, top_k: int):
        super().__init__()
        self.step, self.num_memory, self.top_k = step, num_memory, top_k

    def forward(self, input_ids, position, beam_index, beam_scores, *tensors):
        m = self.num_memory
        memory = [(tensors[i], tensors[i + 1]) for i in range(0, m, 2)]
        past = [t.index_select(0, beam_index) for t in tensors[m:]]
        pairs = [(past[i], past[i + 1]) for i in range(0, len(past), 2)]
        cache = SlotCache(position, past[0].shape[2])
        logits, *present = self.step.run(input_ids, position, memory, pairs, cache)
        logits = logits.float()     # as generate() does: scores in fp32 whatever the weights are
        scores = torch.log_softmax(logits, dim=-1) + beam_scores.unsqueeze(1)
        values, ids = torch.topk(scores, self.top_k, dim=-1, largest=True, sorted=True)
        return (values, ids, logits, *present)


def static_example(split) -> tuple[StaticStep, tuple, tuple]:
    """The static step module, example arguments and their dynamic shapes, for any exporter."""
    from .onnx import _dynamic

    why = supported(split)
    if why is not None:
        raise ExportError(f"no TensorRT-shaped step for this model: {why}; export with targets=('onnx',)")
    dim = torch.export.Dim
    dims = {"B": dim("B", min=1), "N": dim("N", min=1), "S": dim("S", min=1)}
    rows_in, length = dim("P", min=1), dim("C", min=2)
    module = StaticStep(split.step, len(split.step_memory), top_k_for(split)).eval()

    pixels = torch.randn(_B, 3, *split.image_size)
    with torch.no_grad():
        memory = dict(zip(split.memory_names, split.encoder(pixels)))
    memory_shapes = dict(zip(split.memory_names, split.memory_shapes or [("B", "h", "S", "d")] * len(memory)))
    step_memory = [memory[name] for name in split.step_memory]
    past = [torch.randn(*[{"N": _P, "T": _C}.get(d, d) for d in s.shape]) for s in split.state]
    args = (torch.randint(0, split.vocab_size, (_N, 1)), torch.tensor([2]),
            torch.tensor([0, 2, 3, 5]), torch.randn(_N), *step_memory, *past)
    past_dims = [{0: rows_in, s.grow_axis: length} for s in split.state]
    shapes = ({0: dims["N"]}, None, {0: dims["N"]}, {0: dims["N"]},
              (*[_dynamic(memory_shapes[name], dims) for name in split.step_memory], *past_dims))
    return module, args, shapes


def export_static_step(split, out_dir: Path, *, opset: int | None = None,
                       progress: Callable[[str], None] | None = None) -> StaticStepSpec:
    """Write decoder_step_static.onnx into `out_dir`, check it, and describe it for the manifest."""
    from .onnx import check_graph, write_graph

    say = progress or (lambda msg: None)
    module, args, shapes = static_example(split)
    inputs = [*STATIC_INPUTS, *split.step_memory, *split.past_names]
    outputs = [*STATIC_OUTPUTS, *split.present_names]
    say(f"exporting the TensorRT-shaped decoder step ({STATIC_FILE}, top-{module.top_k} in the graph)")
    write_graph(module, args, Path(out_dir) / STATIC_FILE, inputs, outputs, shapes, opset)
    info = check_graph(Path(out_dir), STATIC_FILE)
    return StaticStepSpec(file=info.file, inputs=info.inputs, outputs=info.outputs, top_k=module.top_k)


def validate_static_step(split, out_dir: Path, *, atol: float = 1e-4, rtol: float = 1e-3, steps: int = 4,
                         beams: int = 2, seed: int = 0) -> dict[str, float]:
    """Run decoder_step_static.onnx on ONNX Runtime against the dynamic PyTorch step, step by step.

    Two images, `beams` rows each, the prompt fed one token per step then `steps` more; every step
    after the prompt reorders the rows by a random beam index, and the last one drops an image. The
    logits, the written cache rows and the top-k must agree; returns the max abs differences."""
    import numpy as np
    import onnxruntime as ort

    from .onnx import check_close

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(Path(out_dir) / STATIC_FILE), opts, providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    b, n = 2, 2 * beams
    pixels = torch.randn(b, 3, *split.image_size, generator=gen)
    diffs: dict[str, float] = {}
    outputs = [*STATIC_OUTPUTS, *split.present_names]
    prompt = list(split.prompt_ids)
    length = len(prompt) + steps + 1

    def compare(kind: str, got, want) -> None:
        check_close(diffs, kind, f"{STATIC_FILE} (against the decoder step)", got, want, atol, rtol)

    with torch.no_grad():
        memory = [t.numpy() for t in split.encoder(pixels)]
        by_name = dict(zip(split.memory_names, memory))
        mem = {name: by_name[name] for name in split.step_memory}
        cache = [np.zeros([{"N": n, "T": length}.get(d, d) for d in s.shape], np.float32) for s in split.state]
        grown = [np.zeros([{"N": n, "T": 0}.get(d, d) for d in s.shape], np.float32) for s in split.state]
        tokens = np.asarray(prompt[:1] * n, np.int64).reshape(n, 1)
        rows, images = n, b
        for i in range(len(prompt) + steps):
            index = np.arange(rows)
            if i >= len(prompt):                   # reorder within each image; drop the first image last
                index = np.concatenate([img * beams + rng.integers(0, beams, beams) for img in range(images)])
                if i == len(prompt) + steps - 1 and images > 1:
                    index, images = index[beams:], images - 1
                    mem = {k: v[1:] for k, v in mem.items()}
            scores = rng.standard_normal(len(index)).astype(np.float32)
            feed = {"input_ids": tokens[index] if i >= len(prompt) else tokens, "position": np.array([i], np.int64),
                    "beam_index": index.astype(np.int64), "beam_scores": scores, **mem,
                    **dict(zip(split.past_names, cache))}
            got = dict(zip(outputs, session.run(outputs, feed)))
            grown = [g[index] for g in grown]
            ref = split.step(torch.from_numpy(feed["input_ids"]), *[torch.from_numpy(v) for v in mem.values()],
                             *[torch.from_numpy(g) for g in grown])
            compare("logits", got["logits"], ref[0].numpy())
            want = torch.log_softmax(ref[0], -1).numpy() + scores[:, None]
            compare("topk_scores", got["topk_scores"], np.take_along_axis(want, got["topk_ids"], axis=1))
            k = got["topk_ids"].shape[1]
            compare("topk_scores vs the k-th best", got["topk_scores"][:, -1:], -np.sort(-want, axis=1)[:, k - 1:k])
            grown = [t.numpy() for t in ref[1:]]
            cache = [got[name] for name in split.present_names]
            for spec, present, full in zip(split.state, cache, grown):
                compare("cache", np.take(present, range(i + 1), axis=spec.grow_axis), full)
            rows = len(index)
            tokens = (np.asarray(prompt[i + 1:i + 2] * rows, np.int64).reshape(rows, 1) if i + 1 < len(prompt)
                      else got["topk_ids"][:, :1])
    return diffs

