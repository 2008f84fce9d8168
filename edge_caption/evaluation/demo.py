"""`edge-caption demo`: caption a generated video with a bundle and write it annotated as an MP4."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..errors import SourceError


def run(captioner, out: str | Path = "demo.mp4", *, seed: int = 0, frames: int = 240, fps: float = 15.0,
        size: int = 384, progress: bool = True, **decoding: Any) -> dict[str, Any]:
    """Caption every frame of `scenes.scene_video(seed)`; draw the caption, the true caption and
    (for families that attend) the attention heatmap; write `out`. Returns what happened, with the
    share of frames the grammar can describe whose caption is one of their true paraphrases."""
    import cv2

    from . import scenes
    from ..progress import Progress
    from ..stream.overlay import annotate

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size, size))
    if not writer.isOpened():
        raise SourceError(f"OpenCV cannot write {out} (no MP4 encoder in this cv2 build); "
                          "install opencv-python-headless from PyPI, or pass --out with a .avi name")
    attend = captioner.manifest.attention_grid is not None
    bar = Progress(frames, "demo", enabled=progress)
    agree = named = 0
    latencies = []
    try:
        for frame, truths in scenes.scene_video(seed, frames=frames, size=(size, size)):
            start = time.perf_counter()
            caption = captioner.caption(frame, return_attention=attend, **decoding)
            latencies.append((time.perf_counter() - start) * 1e3)
            if truths:
                named += 1
                agree += caption.text in truths
            writer.write(annotate(frame, caption, truth=truths[0] if truths else ""))
            bar.advance()
    finally:
        writer.release()
        bar.close()
    latencies.sort()
    return {"out": str(out), "frames": frames, "fps": fps, "attention": attend,
            "frames_with_truth": named, "exact_on_those": agree / named if named else None,
            "median_latency_ms": latencies[len(latencies) // 2] if latencies else None}
