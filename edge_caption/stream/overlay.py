"""Drawing captions and attention maps on frames (OpenCV only): the demo, `stream --show/--out`."""
from __future__ import annotations

import textwrap

import numpy as np


def attention_image(attention: np.ndarray, tokens: int | None = None) -> np.ndarray:
    """One map from per-token maps [T,h,w]: their mean over the first `tokens` (the words, not EOS)."""
    maps = attention[:tokens] if tokens else attention
    mean = maps.mean(axis=0) if len(maps) else np.zeros(attention.shape[1:], np.float32)
    span = float(mean.max() - mean.min())
    return (mean - mean.min()) / span if span > 0 else np.zeros_like(mean)


def heatmap(frame: np.ndarray, weights: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend a [h,w] map in 0..1 over a BGR frame, smoothly upsampled to the frame's size."""
    import cv2

    h, w = frame.shape[:2]
    up = cv2.resize(weights.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    colored = cv2.applyColorMap(np.clip(up * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.addWeighted(frame, 1 - alpha, colored, alpha, 0)


def draw_text(frame: np.ndarray, lines: list[tuple[str, tuple[int, int, int]]], *, top: bool = False) -> np.ndarray:
    """Write lines of (text, BGR colour) on a dark band at the bottom (or top), wrapped to the width."""
    import cv2

    out = frame.copy()
    h, w = out.shape[:2]
    scale = max(0.35, w / 900)
    thickness = max(1, int(round(scale * 1.6)))
    (char_w, char_h), base = cv2.getTextSize("M", cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    wrapped = [(piece, color) for text, color in lines
               for piece in (textwrap.wrap(text, max(8, int(w / (char_w * 0.8)))) or [""])]
    line_h = char_h + base + 6
    band = line_h * len(wrapped) + 6
    y0 = 0 if top else h - band
    shade = out[y0:y0 + band]
    out[y0:y0 + band] = (shade * 0.35).astype(np.uint8)
    for i, (text, color) in enumerate(wrapped):
        cv2.putText(out, text, (6, y0 + 4 + char_h + i * line_h), cv2.FONT_HERSHEY_SIMPLEX, scale, color,
                    thickness, cv2.LINE_AA)
    return out


def annotate(frame: np.ndarray, caption, *, truth: str | None = None) -> np.ndarray:
    """The frame with its caption (and the attention heatmap when the caption has one)."""
    out = frame
    if caption.attention is not None and len(caption.attention):
        words = len(caption.text.split()) or None
        out = heatmap(frame, attention_image(caption.attention, words))
    lines = [(caption.text or "(no caption)", (255, 255, 255))]
    if truth is not None:
        lines.append((f"truth: {truth or '(nothing the grammar names)'}", (160, 220, 160)))
    return draw_text(out, lines)
