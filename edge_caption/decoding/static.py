"""Decoding through the TensorRT-shaped step (the manifest's `static_step`; export/static_step.py).

The step graph owns the cache's shape and the beam reorder: the state here only remembers which row
of the previous step each row continues (`beam_index`, fed to the next step) and where the next
token goes (`position`). A backend that runs the graph hands out a `StaticSession` holding the
caches where it keeps them (numpy arrays for ONNX Runtime, two device buffer sets for TensorRT).
"""
from __future__ import annotations

import numpy as np

from ..errors import OptionError
from ..manifest import Manifest, StateSpec
from .contract import StaticSession


def cache_shape(spec: StateSpec, rows: int, length: int) -> tuple[int, ...]:
    """A state tensor as the static step holds it: `rows` rows, `length` positions on the grow axis."""
    shape = []
    for axis, dim in enumerate(spec.shape):
        if isinstance(dim, int):
            shape.append(dim)
        elif axis == spec.grow_axis:
            shape.append(length)
        elif dim == "N":
            shape.append(rows)
        else:
            raise ValueError(f"state {spec.input!r}: cannot size dimension {dim!r} of a static cache")
    return tuple(shape)


def cache_length(prompt_len: int, max_new_tokens: int) -> int:
    """Positions a caption needs: the prompt and every generated token but the last are fed back."""
    return max(2, prompt_len + max_new_tokens - 1)


def take_step(state, input_ids: np.ndarray, needed: int, processors: tuple | None = None,
              beam_scores: np.ndarray | None = None) -> tuple[tuple[np.ndarray, np.ndarray] | None, np.ndarray | None]:
    """Run one decoder step for greedy (`needed` 1) or beam search (`needed` candidates per row):
    (the step's own top-k, None) where the step can give it, else (None, logits [rows, V]).

    `processors`: (history, options, prompt_len, eos_ids, greedy) when a history-dependent processor
    applies this step, else None: then the whole rows are needed. A DecoderState (top_k 0) always
    answers with logits."""
    if needed <= state.top_k and processors is None:
        top = state.step_top(input_ids, beam_scores, needed)
        return (top, None) if top is not None else (None, state.last_logits())
    return None, state.step(input_ids)


def check_length(needed: int, available: int, fix: str) -> None:
    if needed > available:
        raise OptionError(f"this caption needs {needed} cache positions but the step was built for {available}; "
                          f"lower max_new_tokens, or {fix}")


class StaticDecoderState:
    """DecoderState's interface (step, reorder, keep, images) over a StaticSession, plus `step_top`."""

    def __init__(self, session: StaticSession, manifest: Manifest, images: int, rows_per_image: int, length: int):
        self.session, self.manifest, self.k, self.length = session, manifest, rows_per_image, length
        self.top_k = session.top_k
        self.images = np.arange(images)
        self.extras: dict[str, np.ndarray] = {}
        self.position = 0
        self.beam_index = np.arange(images * rows_per_image, dtype=np.int64)

    @property
    def active(self) -> int:
        return len(self.images)

    def _run(self, input_ids: np.ndarray, beam_scores: np.ndarray | None) -> None:
        input_ids = np.asarray(input_ids, dtype=np.int64)
        rows = len(self.beam_index)
        zeros = np.zeros(rows, np.float32)
        for column in range(input_ids.shape[1]):        # a prompt goes in one token per step
            if self.position >= self.length:
                # a slot past the cache would be written nowhere and every slot attended: refuse
                raise RuntimeError(f"the static step's cache holds {self.length} positions and step "
                                   f"{self.position + 1} needs one more; this is a bug in the decoding loop")
            last = column == input_ids.shape[1] - 1
            scores = zeros if beam_scores is None or not last else np.asarray(beam_scores, np.float32).reshape(-1)
            self.session.run(np.ascontiguousarray(input_ids[:, column:column + 1]), self.position, self.beam_index,
                             scores)
            self.position += 1
            self.beam_index = np.arange(rows, dtype=np.int64)

    def step(self, input_ids: np.ndarray) -> np.ndarray:
        """Logits [rows, V] float32, as DecoderState.step: for steps a processor must see whole."""
        self._run(input_ids, None)
        return self.last_logits()

    def step_top(self, input_ids: np.ndarray, beam_scores: np.ndarray | None = None,
                 needed: int = 1) -> tuple[np.ndarray, np.ndarray] | None:
        """Run the step; its per-row top-k of log-softmax + `beam_scores` (None: zeros), computed where
        the step runs, in generate()'s order (by value, then the lower id: a GPU top-k does not promise
        the second).

        None where a tie leaves the answer to the logits (`last_logits()` then): greedy (`needed` 1)
        when the best two log-probs are equal (generate() takes the argmax of the logits, which one
        rounding may have merged); beam search when the `needed`-th value runs on to the last one the
        step kept (equal candidates past it may have lower ids)."""
        self._run(input_ids, beam_scores)
        values, ids = self.session.top()
        values, ids = np.asarray(values, dtype=np.float32), np.asarray(ids, dtype=np.int64)
        order = np.lexsort((ids, -values), axis=-1)
        values, ids = np.take_along_axis(values, order, axis=1), np.take_along_axis(ids, order, axis=1)
        kept = values.shape[1]
        if needed == 1 and kept > 1 and (values[:, 0] == values[:, 1]).any():
            return None
        # rows still carrying beam search's -1e9 start mask (or -inf) cannot reach an image's top-k
        if 1 < needed < kept and ((values[:, needed - 1] == values[:, kept - 1]) & (values[:, needed - 1] > -1e8)).any():
            return None
        return values, ids

    def last_logits(self) -> np.ndarray:
        """The logits of the step step_top just ran (when it answered None)."""
        return np.asarray(self.session.logits(), dtype=np.float32)

    def reorder(self, rows: np.ndarray) -> None:
        """The next step continues row rows[i] in row i: the graph's Gather does it, nothing moves here."""
        self.beam_index = self.beam_index[np.asarray(rows, dtype=np.int64)]

    def keep(self, images: np.ndarray) -> None:
        if len(images) == self.active:
            return
        rows = (images[:, None] * self.k + np.arange(self.k)[None, :]).reshape(-1)
        self.beam_index = self.beam_index[rows]
        self.session.keep(images)
        self.images = self.images[images]
