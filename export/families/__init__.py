"""Our reference captioners for the classic architectures, trained on the generated scenes.

`create(family, vocab=...)` builds one with fresh weights; `load(directory)` reads one that
`edge-caption train` (or `model.save`) wrote. Each adapts to the model contract through
`edge_caption.export.adapters.reference`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_caption.errors import ExportError

from .attend import ShowAttendTell
from .base import BOS, EOS, PAD, WEIGHTS_FILE, ReferenceCaptioner, check_image_size, load_config
from .show_tell import ShowTell
from .transformer import CnnTransformer

FAMILIES: dict[str, type[ReferenceCaptioner]] = {
    cls.family: cls for cls in (ShowTell, ShowAttendTell, CnnTransformer)
}

__all__ = ["FAMILIES", "ReferenceCaptioner", "check_image_size", "create", "load", "is_model_dir", "PAD", "BOS", "EOS"]


def create(family: str, *, vocab: list[str] | None = None, seed: int | None = None, **config: Any) -> ReferenceCaptioner:
    """A reference captioner with fresh weights; `vocab` defaults to the scene grammar's words."""
    if family not in FAMILIES:
        raise ExportError(f"unknown family {family!r}; choose one of: {', '.join(FAMILIES)}")
    if vocab is None:
        from edge_caption.evaluation.scenes import vocabulary

        vocab = vocabulary()
    import torch

    if seed is not None:
        torch.manual_seed(seed)
    return FAMILIES[family]({**config, "vocab": list(vocab)}).eval()


def load(directory: str | Path) -> ReferenceCaptioner:
    import torch

    directory = Path(directory)
    config = load_config(directory)
    family = config.pop("edge_caption_family")
    model = create(family, **config)
    model.load_state_dict(torch.load(directory / WEIGHTS_FILE, map_location="cpu", weights_only=True))
    return model.eval()


def is_model_dir(path: str | Path) -> bool:
    try:
        load_config(Path(path))
    except ExportError:
        return False
    return True
