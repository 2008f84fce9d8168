"""What captioning returns: `Caption` per image and `CaptionEvent` per streamed caption."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Caption:
    text: str
    token_ids: tuple[int, ...]          # the ids generate() returns after the prompt, EOS included, no padding
    score: float                        # beam: HF's sequence score; greedy: mean token log-prob
    timings: dict[str, float] = field(default_factory=dict)   # ms: preprocess, encode, decode, total
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
    source: Any                         # the source's URI, or its index for an iterable
    frame_index: int
    timestamp: float                    # time.time() at capture
    caption: Caption
    latency_ms: float
    dropped: int = 0
    gated: int = 0
    changed: bool = True
    gap_s: float = 0.0
    frame: np.ndarray | None = field(default=None, compare=False, repr=False)   # with keep_frames=True
