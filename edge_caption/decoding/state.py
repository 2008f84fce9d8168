"""The decoder state that flows between steps: memory per image, recurrent tensors per row.

Generic over the manifest's state spec, so a new family needs no change here. Rows are batch-major
(image b owns rows b*k .. b*k+k-1, k = rows per image), as the step graph expects.
"""
from __future__ import annotations

import numpy as np

from ..manifest import Manifest, StateSpec
from .contract import StepBackend

_DTYPES = {"float32": np.float32, "float16": np.float16, "int64": np.int64, "int32": np.int32}


class DecoderState:
    """Memory, recurrent state and bookkeeping of the images still being decoded."""

    top_k = 0       # the step hands over whole rows of logits (static.py's state also has a top-k)

    def __init__(self, backend: StepBackend, manifest: Manifest, memory: dict[str, np.ndarray], rows_per_image: int):
        self.backend = backend
        self.manifest = manifest
        self.memory = memory
        self.k = rows_per_image
        self.images = np.arange(next(iter(memory.values())).shape[0])   # original index of each active image
        self.state = {spec.input: initial_state(spec, memory, len(self.images), rows_per_image)
                      for spec in manifest.state}
        self.extras: dict[str, np.ndarray] = {}

    @property
    def active(self) -> int:
        return len(self.images)

    def step(self, input_ids: np.ndarray) -> np.ndarray:
        """Run one decoder step on [active*k, L] ids; returns logits [active*k, V] as float32.

        A step that takes one token at a time (an RNN) is run once per column of a longer prompt."""
        input_ids = np.ascontiguousarray(input_ids, dtype=np.int64)
        columns = [input_ids[:, i:i + 1] for i in range(input_ids.shape[1])] \
            if self.manifest.tokens_per_step == 1 else [input_ids]
        for ids in columns:
            logits, self.state, self.extras = self.backend.step(np.ascontiguousarray(ids), self.memory, self.state)
        return np.asarray(logits, dtype=np.float32)

    def reorder(self, rows: np.ndarray) -> None:
        """Gather recurrent rows by source row (beam search's cache reorder)."""
        if np.array_equal(rows, np.arange(len(rows))):
            return
        for spec in self.manifest.state:
            if spec.reorder:
                self.state[spec.input] = np.take(self.state[spec.input], rows, axis=0)

    def keep(self, images: np.ndarray) -> None:
        """Keep only the given active images (positions in the active list): finished ones cost nothing."""
        if len(images) == self.active:
            return
        rows = (images[:, None] * self.k + np.arange(self.k)[None, :]).reshape(-1)
        self.memory = {name: np.take(value, images, axis=0) for name, value in self.memory.items()}
        self.state = {name: np.take(value, rows, axis=0) for name, value in self.state.items()}
        self.extras = {name: np.take(value, rows, axis=0) for name, value in self.extras.items()}
        self.images = self.images[images]


def initial_state(spec: StateSpec, memory: dict[str, np.ndarray], images: int, k: int) -> np.ndarray:
    """A state tensor before the first step, for `images` images with `k` rows each."""
    if spec.init.startswith("memory:"):
        return np.repeat(memory[spec.init.split(":", 1)[1]], k, axis=0)
    sizes = {"N": images * k, "B": images, "T": 0}
    shape = []
    for axis, dim in enumerate(spec.shape):
        if isinstance(dim, int):
            shape.append(dim)
        elif spec.init == "empty" and axis == spec.grow_axis:
            shape.append(0)
        elif dim in sizes:
            shape.append(sizes[dim])
        else:
            raise ValueError(f"state {spec.input!r}: cannot size dimension {dim!r} at start")
    return np.zeros(shape, dtype=_DTYPES[spec.dtype])
