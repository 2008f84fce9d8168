"""Shared fixtures: tiny models exported once per test session."""
from __future__ import annotations

import pytest

from edge_caption.export import testing as models


class Exported:
    """Bundles of tiny random-weight models, exported on first use and reused."""

    def __init__(self, root):
        self.root = root
        self._cache: dict = {}

    def __call__(self, family: str, seed: int = 0, targets: tuple[str, ...] = ("onnx",)):
        key = (family, seed, targets)
        if key not in self._cache:
            from edge_caption.export import export

            model = getattr(models, f"tiny_{family}")(seed)
            kind = "bpe" if "gpt2" in family else "wordpiece"
            path = export(model, self.root / f"{family}-{seed}-{'-'.join(targets)}.ecap",
                          tokenizer=models.tiny_tokenizer(kind=kind), targets=targets,
                          processor=models.tiny_image_processor("blip" if family == "blip" else "vit"), progress=False)
            self._cache[key] = (model, path)
        return self._cache[key]


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    pytest.importorskip("torch")
    return Exported(tmp_path_factory.mktemp("bundles"))
