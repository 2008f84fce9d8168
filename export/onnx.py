"""SplitModel -> encoder.onnx + decoder_step.onnx (torch.onnx dynamo exporter), and their validation."""
from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edge_caption.errors import ExportError

ENCODER_FILE = "encoder.onnx"
STEP_FILE = "decoder_step.onnx"
_TWO_GB = 2 * 1024 ** 3
# example sizes: every dynamic axis >= 2, or torch.export specialises it to a constant
_B, _BEAMS, _T, _L = 2, 2, 3, 2


@dataclass(frozen=True)
class GraphInfo:
    file: str                                   # relative to out_dir
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    files: tuple[str, ...] = field(default=())  # file plus any external-data file next to it


def export_onnx(split, out_dir: Path, *, opset: int | None = None,
                progress: Callable[[str], None] | None = None) -> dict[str, GraphInfo]:
    """Write encoder.onnx and decoder_step.onnx into `out_dir`, check them, and describe their I/O."""
    import torch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda msg: None)
    dim = torch.export.Dim
    B, N, T, L, S = dim("B", min=1), dim("N", min=1), dim("T", min=0), dim("L", min=1), dim("S", min=1)

    dims = {"B": B, "N": N, "T": T, "L": L, "S": S}

    pixels = torch.randn(_B, 3, *split.image_size)
    with torch.no_grad():
        memory = dict(zip(split.memory_names, split.encoder(pixels)))
    say(f"exporting the encoder ({ENCODER_FILE})")
    with _eager_attention(split.encoder):
        write_graph(split.encoder, (pixels,), out_dir / ENCODER_FILE, ["pixel_values"], list(split.memory_names),
                ({0: B},), opset)

    n = _B * _BEAMS
    one = split.tokens_per_step == 1
    ids = torch.randint(0, split.vocab_size, (n, 1 if one else _L))
    step_memory = [memory[name] for name in split.step_memory]
    memory_shapes = dict(zip(split.memory_names, split.memory_shapes or [("B", "h", "S", "d")] * len(memory)))
    past = [torch.randn(*[{"N": n, "T": _T}.get(d, d) for d in s.shape]) for s in split.state]
    # StepBase.forward(input_ids, *tensors): torch.export wants the varargs' shapes as one nested tuple
    shapes = ({0: N} if one else {0: N, 1: L},
              (*[_dynamic(memory_shapes[name], dims) for name in split.step_memory],
               *[_dynamic(s.shape, dims) for s in split.state]))
    say(f"exporting the decoder step ({STEP_FILE})")
    write_graph(split.step, (ids, *step_memory, *past), out_dir / STEP_FILE,
            ["input_ids", *split.step_memory, *split.past_names],
            ["logits", *split.present_names, *split.step_extras], shapes, opset)

    graphs = {"encoder": check_graph(out_dir, ENCODER_FILE), "decoder_step": check_graph(out_dir, STEP_FILE)}
    say("ONNX graphs written and checked")
    return graphs


def _dynamic(shape, dims) -> dict:
    """Symbolic axes of a declared shape -> torch.export dims (B/N/T/S; named sizes of HF K/V too)."""
    return {axis: dims[d] for axis, d in enumerate(shape) if isinstance(d, str) and d in dims}


@contextlib.contextmanager
def _eager_attention(module):
    """Export HF vision models with eager attention, restored afterwards: the sdpa path of some
    (Swin in transformers 5.x) reshapes a non-contiguous view that the ONNX decomposition rejects.
    Eager is the same math, and plain MatMul/Softmax is what TensorRT fuses anyway."""
    changed = []
    for sub in module.modules():
        config = getattr(sub, "config", None)
        current = getattr(config, "_attn_implementation", None)
        if hasattr(sub, "set_attn_implementation") and current not in (None, "eager"):
            try:
                sub.set_attn_implementation("eager")
                changed.append((sub, current))
            except (ValueError, NotImplementedError):
                pass
    try:
        yield
    finally:
        for sub, current in reversed(changed):
            sub.set_attn_implementation(current)


def write_graph(module, args, path: Path, inputs, outputs, dynamic_shapes, opset) -> None:
    import torch

    log = io.StringIO()
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        # the exporter prints several lines per graph and warns per op; keep them for error messages only
        with warnings.catch_warnings(), contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(module, args, None, dynamo=True, input_names=inputs, output_names=outputs,
                                        dynamic_shapes=dynamic_shapes, opset_version=opset, verbose=False)
            size = sum(p.numel() * p.element_size() for p in module.parameters())
            program.save(str(path), external_data=size >= _TWO_GB)
    except Exception as exc:
        tail = log.getvalue()[-3000:]
        raise ExportError(f"torch.onnx.export failed for {path.name}: {type(exc).__name__}: {exc}\n{tail}") from exc
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def check_graph(out_dir: Path, name: str) -> GraphInfo:
    import onnx

    path = out_dir / name
    try:
        onnx.checker.check_model(str(path))     # by path: works past 2 GB with external data
    except Exception as exc:
        raise ExportError(f"{name} fails onnx.checker: {exc}") from exc
    model = onnx.load(str(path), load_external_data=False)
    external = sorted({entry.value for init in model.graph.initializer for entry in init.external_data
                       if entry.key == "location"})
    return GraphInfo(file=name, inputs=tuple(i.name for i in model.graph.input),
                     outputs=tuple(o.name for o in model.graph.output), files=(name, *external))


def validate(split, out_dir: Path, *, atol: float = 1e-4, rtol: float = 1e-3, steps: int = 3,
             beams: int = 2, seed: int = 0) -> dict[str, float]:
    """Run the ONNX graphs in onnxruntime (CPU) on random pixels (B=2) and a `steps`-step decode with
    `beams` rows per image from T=0; compare with the torch modules and the original HF model.

    The first step feeds the prompt plus one token (L >= 2 at T=0), later steps one token each.
    Returns the max abs differences; raises ExportError naming the tensor that disagrees."""
    import onnxruntime as ort
    import torch

    from edge_caption.decoding.state import initial_state

    out_dir = Path(out_dir)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    enc = ort.InferenceSession(str(out_dir / ENCODER_FILE), opts, providers=["CPUExecutionProvider"])
    step = ort.InferenceSession(str(out_dir / STEP_FILE), opts, providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(seed)
    b, n = 2, 2 * beams
    pixels = torch.randn(b, 3, *split.image_size, generator=gen)
    diffs: dict[str, float] = {}

    def compare(kind: str, name: str, got, want) -> None:
        check_close(diffs, kind, name, got, want, atol, rtol)

    oracle = split.recompute or (lambda p, seq: _hf_logits(split, p, seq))
    outputs = ["logits", *split.present_names, *split.step_extras]
    with torch.no_grad():
        ref_memory = [t.numpy() for t in split.encoder(pixels)]
        memory = enc.run(list(split.memory_names), {"pixel_values": pixels.numpy()})
        for name, got, want in zip(split.memory_names, memory, ref_memory):
            compare("memory_vs_torch", name, got, want)
        by_name = dict(zip(split.memory_names, memory))
        mem_feed = {name: by_name[name] for name in split.step_memory}
        mem_torch = [torch.from_numpy(by_name[name]) for name in split.step_memory]

        sequence = torch.tensor([split.prompt_ids] * n, dtype=torch.long)
        if split.tokens_per_step == 1:
            feeds = [sequence[:, i:i + 1] for i in range(sequence.shape[1])]    # one token per step
        else:
            sequence = torch.cat([sequence, torch.randint(0, split.vocab_size, (n, 1), generator=gen)], dim=1)
            feeds = [sequence]
        past = [initial_state(s, by_name, b, beams) for s in split.state]
        hf_pixels = pixels.repeat_interleave(beams, dim=0)
        for i in range(len(feeds) - 1 + steps):
            new = feeds[i] if i < len(feeds) else new
            feed = {"input_ids": new.numpy(), **mem_feed, **dict(zip(split.past_names, past))}
            out = step.run(outputs, feed)
            ref = split.step(new, *mem_torch, *[torch.from_numpy(p) for p in past])
            for name, got, want in zip(outputs, out, ref):
                kind = "logits_vs_torch" if name == "logits" else "present_vs_torch"
                compare(kind, name, got, want.numpy())
            past = out[1:1 + len(split.state)]
            if i < len(feeds) - 1:
                continue
            compare("logits_vs_recompute", "logits", out[0], oracle(hf_pixels, sequence).numpy())
            new = torch.from_numpy(out[0]).argmax(-1, keepdim=True)
            sequence = torch.cat([sequence, new], dim=1)
    return diffs


def check_close(diffs: dict[str, float], kind: str, name: str, got, want, atol: float, rtol: float) -> None:
    """Record in diffs[kind] the largest |got - want| so far; raise naming `name` when any element is
    beyond atol + rtol * |want| (or the shapes differ): the exported graph does not match the model."""
    import numpy as np

    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise ExportError(f"{name}: shape {got.shape} from ONNX, {want.shape} expected")
    err = float(np.abs(got - want).max()) if got.size else 0.0
    diffs[kind] = max(diffs.get(kind, 0.0), err)
    if (np.abs(got - want) > atol + rtol * np.abs(want)).any():
        raise ExportError(f"{name} disagrees ({kind}): max abs diff {err:.3g} "
                          f"(atol {atol}, rtol {rtol}); the exported graph does not match the model")


def _hf_logits(split, pixels, sequence):
    """Last-position logits of the original model, recomputing the whole sequence (no cache)."""
    model = split.hf_model
    if model is None:
        raise ExportError("validate needs split.hf_model (the original model)")
    if split.family == "blip":
        return model(pixel_values=pixels, input_ids=sequence).logits[:, -1]
    return model(pixel_values=pixels, decoder_input_ids=sequence, use_cache=False).logits[:, -1]
