"""`torch.export` programs for backend="torch-cuda" (export targets "torch").

The same two computations the ONNX graphs hold, saved as `.pt2` programs so that a GPU machine with
torch runs them without the model's Python code: the encoder, and the TensorRT-shaped step
(static_step.py: max-length cache written at the position, the beam Gather and the top-k inside).
Each is traced twice, in fp32 and in fp16: a traced program keeps its casts (a vision embedding's
`pixel_values.to(weight.dtype)`) and asserts its tensors' dtypes, so casting a loaded fp32 program
to fp16 breaks it. The step scores candidates in fp32 in both (`logits.float()`), as generate() does.
Each program is loaded back here and checked against the module it came from before the bundle is
written, at one image and one row too.

Sizes of 1 (one image, one row) are the common case at the edge, and torch.export assumes a
dynamic size is not 1 unless told otherwise: export and load both run under `size_oblivious()`,
every dynamic axis is `Dim.DYNAMIC`, and the backend skips the "!= 1" guards the trace records
(`module(check_guards=False)`). The traced ops are shape-generic: the ONNX graph made from the same
trace runs at those sizes on ONNX Runtime, and the checks here run the programs at them.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable

import torch

from edge_caption.backends.torch_cuda import load_program, size_oblivious
from edge_caption.errors import ExportError
from edge_caption.manifest import TorchPrograms

DIR = "torch"
DTYPES = {"float32": torch.float32, "float16": torch.float16}
# fp16 on the CPU (where export checks the programs) rounds differently from fp32: looser bounds
TOLERANCE = {"float32": (1e-4, 1e-3), "float16": (2e-2, 2e-2)}


def export_programs(split, out_dir: Path, *, progress: Callable[[str], None] | None = None) -> TorchPrograms:
    from .onnx import _eager_attention
    from .static_step import static_example

    say = progress or (lambda msg: None)
    out_dir = Path(out_dir)
    (out_dir / DIR).mkdir(parents=True, exist_ok=True)
    module, args, shapes = static_example(split)
    pixels = torch.randn(2, 3, *split.image_size)
    encoders, steps = {}, {}
    for name, dtype in DTYPES.items():
        encoder = copy.deepcopy(split.encoder).to(dtype).eval()
        step = copy.deepcopy(module).to(dtype).eval()
        px = pixels.to(dtype)
        step_args = tuple(_cast(a, dtype) if i not in (1, 2, 3) else a for i, a in enumerate(args))
        encoders[name], steps[name] = f"{DIR}/encoder.{name}.pt2", f"{DIR}/static_step.{name}.pt2"
        say(f"exporting the encoder and the TensorRT-shaped step as torch.export programs ({name})")
        atol, rtol = TOLERANCE[name]
        with _eager_attention(encoder):         # compared with the attention it was traced with
            loaded_encoder = _export(encoder, (px,), ({0: None},), out_dir / encoders[name])
            with torch.no_grad():
                _compare(encoders[name], loaded_encoder(px), encoder(px), atol, rtol)
        loaded_step = _export(step, step_args, shapes, out_dir / steps[name])
        with torch.no_grad():
            _compare(steps[name], loaded_step(*step_args), step(*step_args), atol, rtol)
            memory = [t[:1] for t in step_args[4:4 + len(split.step_memory)]]
            for rows, rows_in in ((1, 1), (3, 3), (1, 3)):          # what a Jetson runs: one image
                past = [t[:rows_in] for t in step_args[4 + len(split.step_memory):]]
                small = (step_args[0][:rows], step_args[1], torch.arange(rows) % rows_in, step_args[3][:rows],
                         *memory, *past)
                _compare(f"{steps[name]} at {rows} row(s) from {rows_in}", loaded_step(*small), step(*small), atol, rtol)
    return TorchPrograms(encoder=encoders, static_step=steps, torch_version=torch.__version__.split("+")[0])


def _cast(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return tensor.to(dtype) if tensor.dtype.is_floating_point else tensor


def _export(module, args, dynamic_shapes, path: Path):
    """Export, save, and return the program as loaded back from `path` (what the backend will run)."""
    try:
        with torch.no_grad(), size_oblivious():
            program = torch.export.export(module, args, dynamic_shapes=_all_dynamic(dynamic_shapes))
        torch.export.save(program, str(path))
        return load_program(path)
    except Exception as exc:
        raise ExportError(f"torch.export failed for {path.name}: {type(exc).__name__}: {exc}") from exc


def _all_dynamic(shapes):
    """Every axis the exporter names (or None marks) becomes Dim.DYNAMIC; None for a static argument."""
    if shapes is None:
        return None
    if isinstance(shapes, dict):
        return {axis: torch.export.Dim.DYNAMIC for axis in shapes}
    return tuple(_all_dynamic(s) for s in shapes)


def _compare(what: str, got, want, atol: float, rtol: float) -> None:
    for i, (g, w) in enumerate(zip(got, want)):
        same = (torch.allclose(g.float(), w.float(), atol=atol, rtol=rtol) if g.dtype.is_floating_point
                else torch.equal(g, w))
        if not same:
            diff = float((g.float() - w.float()).abs().max()) if g.dtype.is_floating_point else "ids differ"
            raise ExportError(f"{what}: output {i} disagrees with the model after saving and loading ({diff}); "
                              "this torch cannot export the model faithfully (try a newer torch)")
