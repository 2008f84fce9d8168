"""What captioning returns: `Caption` per image and `CaptionEvent` per streamed caption."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Caption:
    """One image's caption (API.md's promise, field by field).

    text: the caption.
    token_ids: the ids `generate()` returns after the decoder-start / prompt tokens, EOS included
        when generated, no padding.
    score: beam search: Hugging Face's sequence score, the sum of token log-probs divided by
        length ** length_penalty; greedy: the mean token log-prob.
    timings: milliseconds spent, keyed `preprocess`, `encode`, `decode`, `total`.
    alternatives: the other returned sequences (`num_return_sequences` > 1), in order, each a `Caption`.
    attention: None, or float32 [tokens, h, w] with `return_attention=True` for families that attend:
        where each generated token looked (`edge_caption.stream.overlay.annotate` draws it).
    """

    text: str
    token_ids: tuple[int, ...]
    score: float
    timings: dict[str, float] = field(default_factory=dict)
    alternatives: tuple["Caption", ...] = ()
    attention: np.ndarray | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "token_ids": list(self.token_ids),
            "score": self.score,
            "timings": dict(self.timings),
            "alternatives": [alt.to_dict() for alt in self.alternatives],
        }


@dataclass(frozen=True)
class CaptionEvent:
    """One caption of a stream (API.md's promise, field by field). Every frame read is captioned,
    dropped or gated: none is lost silently.

    source: the source's URI, or its index for an iterable.
    frame_index: per source, from 0 at open, counting every frame read, captioned or not.
    timestamp: `time.time()` at capture; for a recording, the message's stamp.
    caption: the `Caption` of this frame.
    latency_ms: from capture to caption.
    dropped: frames read since this source's previous event that were neither captioned nor gated:
        skipped by the latest-frame policy, by `every_n` / `max_rate`, or corrupt.
    gated: frames not captioned because the view had not changed, since the previous event.
    changed: the text differs from this source's previous caption.
    gap_s: seconds the source was unavailable before this event, 0.0 otherwise.
    frame: the captioned frame, with the stream option `keep_frames=True` (for drawing); else None.
    """

    source: Any
    frame_index: int
    timestamp: float
    caption: Caption
    latency_ms: float
    dropped: int = 0
    gated: int = 0
    changed: bool = True
    gap_s: float = 0.0
    frame: np.ndarray | None = field(default=None, compare=False, repr=False)
