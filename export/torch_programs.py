"""`torch.export` programs for backend="torch-cuda" (export targets "torch").

The same two computations the ONNX graphs hold, saved as `.pt2` programs so that a GPU machine with
torch runs them without the model's Python code: the encoder, and the TensorRT-shaped step
(static_step.py: max-length cache written at the position, the beam Gather and the top-k inside).
They are saved in fp32 on the CPU; the backend moves them to its GPU and casts them to fp16/bf16.
Each is loaded back here and checked against the module it came from before the bundle is written.

Sizes of 1 (one image, one row) are the common case at the edge, and torch.export assumes a
dynamic size is not 1 unless told otherwise: both export and load run under `size_oblivious()`,
with every dynamic axis `Dim.DYNAMIC`, and the backend skips the "!= 1" guards the trace records
(`module(check_guards=False)`). The traced ops are shape-generic (the ONNX graph made from the
same trace runs at those sizes on ONNX Runtime), and the tests run the programs at 1 image and 1 row.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from edge_caption.errors import ExportError
from edge_caption.manifest import TorchPrograms

DIR = "torch"
ENCODER = f"{DIR}/encoder.pt2"
STEP = f"{DIR}/static_step.pt2"


def export_programs(split, out_dir: Path, *, progress: Callable[[str], None] | None = None,
                    atol: float = 1e-4, rtol: float = 1e-3) -> TorchPrograms:
    from .onnx import _eager_attention
    from .static_step import static_example

    say = progress or (lambda msg: None)
    out_dir = Path(out_dir)
    (out_dir / DIR).mkdir(parents=True, exist_ok=True)
    pixels = torch.randn(2, 3, *split.image_size)
    say(f"exporting the encoder as a torch.export program ({ENCODER})")
    with _eager_attention(split.encoder):
        encoder = _export(split.encoder, (pixels,), ({0: None},), out_dir / ENCODER)
    module, args, shapes = static_example(split)
    say(f"exporting the TensorRT-shaped step as a torch.export program ({STEP})")
    step = _export(module, args, shapes, out_dir / STEP)
    _check_small_sizes(step, module, args, len(split.step_memory))
    say("checking the programs against the modules")
    with torch.no_grad():
        for name, program, source, inputs in ((ENCODER, encoder, split.encoder, (pixels,)), (STEP, step, module, args)):
            got, want = program(*inputs), source(*inputs)
            for i, (g, w) in enumerate(zip(got, want)):
                if g.dtype.is_floating_point and not torch.allclose(g, w, atol=atol, rtol=rtol):
                    raise ExportError(f"{name} output {i} disagrees with the model after saving and loading "
                                      f"(max abs diff {float((g - w).abs().max()):.3g})")
                if not g.dtype.is_floating_point and not torch.equal(g, w):
                    raise ExportError(f"{name} output {i} disagrees with the model after saving and loading")
    return TorchPrograms(encoder=ENCODER, static_step=STEP, torch_version=torch.__version__.split("+")[0])


def size_oblivious():
    """torch.export's setting under which a dynamic axis may be 1 (export and load both need it)."""
    import torch.fx.experimental._config as fx_config

    return fx_config.patch(backed_size_oblivious=True)


def load_program(path: Path):
    """A saved program as a callable module, the way the backend loads it (see the module docstring)."""
    with size_oblivious():
        return torch.export.load(str(path)).module(check_guards=False)


def _export(module, args, dynamic_shapes, path: Path):
    """Export, save, and return the program as loaded back from `path` (what the backend will run)."""
    relaxed = _all_dynamic(dynamic_shapes)
    try:
        with torch.no_grad(), size_oblivious():
            program = torch.export.export(module, args, dynamic_shapes=relaxed)
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
    if isinstance(shapes, tuple) and shapes == ({0: None},):
        return ({0: torch.export.Dim.DYNAMIC},)
    return tuple(_all_dynamic(s) for s in shapes)


def _check_small_sizes(program, module, args, num_memory: int) -> None:
    """The step at one image and one row, and at one image with three rows: what a Jetson runs."""
    memory = [t[:1] for t in args[4:4 + num_memory]]
    for rows, rows_in in ((1, 1), (3, 3), (1, 3)):
        past = [t[:rows_in] for t in args[4 + num_memory:]]
        small = (args[0][:rows], args[1], torch.arange(rows) % rows_in, args[3][:rows], *memory, *past)
        with torch.no_grad():
            got, want = program(*small), module(*small)
        if not all(torch.allclose(g, w, atol=1e-4, rtol=1e-3) if g.dtype.is_floating_point else torch.equal(g, w)
                   for g, w in zip(got, want)):
            raise ExportError(f"{STEP} disagrees with the model at {rows} row(s) from {rows_in}; "
                              "this torch cannot export the step for small batches")
