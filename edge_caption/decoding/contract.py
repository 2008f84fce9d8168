"""The contract between the decoding loops and the backends that run a decoder step, in one place.

Two ways a backend can run a caption's search:

- **The host loop** (`decoding/beam.py`, `greedy.py`): the backend runs one step at a time and the
  search runs here in numpy, on k candidates per row. A backend takes part either through
  `StepBackend.step` (the dynamic graph: whole logits back), or, where the bundle has the
  TensorRT-shaped step (`manifest.static_step`), through `StaticStepBackend.static_session`.
- **The device loop**: the backend runs the whole search where the step runs (a GPU), from the
  first step to the last, and the host reads once per caption, or once per chunk of steps where an
  early stop may come (`DeviceLoopBackend`). Its state is `BEAM_STATE` / `GREEDY_STATE` below,
  sized by a `SearchPlan`; the semantics are generate()'s, as the host loop has them
  (backends/torch_cuda/search.py is the torch implementation, tested against this package's).

The static step every device loop drives (export/static_step.py writes it):

    step(input_ids int64 [N,1], position int64 [1], beam_index int64 [N], beam_scores float32 [N],
         *memory (one per image), *past (max-length caches [N, heads, C, d]))
      -> (topk_scores float32 [N,K], topk_ids int64 [N,K], logits float32 [N,V], *present)

where `beam_index` is the row of the previous step each row continues (the cache reorder, done
inside the step) and `present` is `past` with the new token's K/V written at `position`.
This module imports no torch: it declares, the backends allocate.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..options import DecodeOptions

# ---- the search state a device loop keeps (symbols: B images, nb beams, kk candidates, L max length)


@dataclass(frozen=True)
class StateTensor:
    name: str
    shape: tuple[str, ...]
    dtype: str
    doc: str


BEAM_STATE = (
    StateTensor("running", ("B", "nb", "L"), "int64", "each running beam's tokens, prompt included"),
    StateTensor("running_scores", ("B", "nb"), "float32", "sum of log-probs; -1e9 marks beams not yet started"),
    StateTensor("finished", ("B", "nb", "L"), "int64", "the finished hypotheses' tokens, best first"),
    StateTensor("finished_len", ("B", "nb"), "int64", "new tokens in each finished hypothesis"),
    StateTensor("finished_scores", ("B", "nb"), "float32", "sum of log-probs / length ** length_penalty; -1e9: none"),
    StateTensor("is_finished", ("B", "nb"), "bool", "whether the finished slot holds a hypothesis"),
    StateTensor("unsatisfied", ("B", "1"), "bool", "generate()'s early-stop heuristic: can the image still improve"),
    StateTensor("done", ("1",), "bool", "generate()'s loop condition, negated: nothing can change any more"),
)
GREEDY_STATE = (
    StateTensor("history", ("B", "L"), "int64", "every token, prompt included"),
    StateTensor("length", ("B",), "int64", "new tokens up to and including EOS"),
    StateTensor("logprob_sum", ("B",), "float64", "sum of the chosen tokens' log-probs (processed scores)"),
    StateTensor("finished", ("B",), "bool", "the row has produced EOS or reached max_new_tokens"),
    StateTensor("done", ("1",), "bool", "every row finished"),
)
# what the host reads at the end: the result, and nothing else
RESULT = {"beam": ("finished", "finished_len", "finished_scores", "done"),
          "greedy": ("history", "length", "logprob_sum", "done")}


@dataclass(frozen=True)
class SearchPlan:
    """Everything about one caption batch's search that is fixed before its first step: what a
    captured CUDA graph is keyed by."""

    images: int
    beams: int
    prompt: tuple[int, ...]
    eos: tuple[int, ...]
    options: DecodeOptions

    @property
    def keep_k(self) -> int:
        """Candidates per image per step: generate()'s max(2, 1 + number of EOS ids) x num_beams."""
        return max(2, 1 + len(self.eos)) * self.beams

    @property
    def max_len(self) -> int:
        return len(self.prompt) + self.options.max_new_tokens

    @property
    def steps(self) -> int:
        """Decoder steps of a caption at most: the prompt, one token a step, then every new token but the last."""
        return len(self.prompt) + self.options.max_new_tokens - 1

    def first_possible_stop(self) -> int:
        """How many new tokens are chosen before the search can first stop: EOS is banned while fewer
        than min_new_tokens are out, and without a finished hypothesis the early-stop heuristic
        cannot fire, so the earliest stop comes with token min_new_tokens + 1."""
        return self.options.min_new_tokens + 1

    def shape(self, spec: StateTensor) -> tuple[int, ...]:
        sizes = {"B": self.images, "nb": self.beams, "L": self.max_len, "kk": self.keep_k, "1": 1}
        return tuple(sizes[d] for d in spec.shape)

    def state_spec(self) -> tuple[StateTensor, ...]:
        return GREEDY_STATE if self.beams == 1 else BEAM_STATE

    def result_names(self) -> tuple[str, ...]:
        return RESULT["greedy" if self.beams == 1 else "beam"]


# ---- the backends' side


class StepBackend(Protocol):
    """The dynamic step: whole logits back, state as the manifest's spec says (decoding/state.py)."""

    def step(self, input_ids: np.ndarray, memory: dict[str, np.ndarray], state: dict[str, np.ndarray]
             ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]: ...


class StaticSession(Protocol):
    """One caption batch through the static step, driven from the host (decoding/static.py)."""

    top_k: int

    def run(self, input_ids: np.ndarray, position: int, beam_index: np.ndarray, beam_scores: np.ndarray) -> None:
        """One step: int64 [N,1] ids, int64 [N] rows of the previous step, float32 [N] added before the top-k."""

    def top(self) -> tuple[np.ndarray, np.ndarray]:
        """The last step's per-row top-k: (float32 scores [N, top_k], int64 ids), best first."""

    def logits(self) -> np.ndarray:
        """The last step's float32 logits [N, V] (for history-dependent processors)."""

    def keep(self, images: np.ndarray) -> None:
        """From the next step on, only these images' memory (positions in the active list)."""


@runtime_checkable
class StaticStepBackend(Protocol):
    """A backend that runs the static step (`static_step` is True)."""

    static_step: bool

    def static_session(self, memory: dict[str, Any], rows_per_image: int, length: int) -> StaticSession: ...


@runtime_checkable
class DeviceLoopBackend(Protocol):
    """A backend that runs the whole search on its device (the GPU loop)."""

    def device_loop_reason(self, options: DecodeOptions, trace: str | None) -> str | None:
        """Why this search cannot run on the device (None: it can)."""

    def decode_on_device(self, memory: dict[str, Any], plan: SearchPlan
                         ) -> list[list[tuple[tuple[int, ...], float, None]]]:
        """Per image, `num_return_sequences` (token ids after the prompt, score, None), best first:
        what decoding.beam_search / greedy_search return for the same plan."""

    def timings(self) -> dict[str, float] | None:
        """Where the last batch's device time went, in ms (encode, decode, and preprocess where it ran
        on the device), measured on the device; None where the device has no clock to read."""
