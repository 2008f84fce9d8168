"""torch.compile (Inductor) with a way back: a function whose compilation fails runs as it is."""
from __future__ import annotations

import logging
from typing import Any, Callable

import torch

log = logging.getLogger(__name__)


class Compiled:
    """`fn` under torch.compile (shapes static: one compilation per shape, cached on disk by Inductor,
    keyed by the GPU and torch). If compiling fails (an Inductor gap for some op on some torch), it
    says why once and runs `fn` uncompiled from then on: slower, still right."""

    def __init__(self, fn: Callable[..., Any], *, fullgraph: bool = False, options: dict[str, Any] | None = None):
        """`options`: Inductor's (torch.compile's `options`), e.g. {"combo_kernels": True}."""
        self.fn = fn
        self.compiled = torch.compile(fn, dynamic=False, fullgraph=fullgraph, options=options or None)
        self.failed: str | None = None

    def __call__(self, *args: Any) -> Any:
        if self.failed is None:
            try:
                return self.compiled(*args)
            except Exception as exc:          # Inductor raises many kinds; the eager function still works
                text = str(exc).splitlines()[0][:300] if str(exc) else ""
                self.failed = f"{type(exc).__name__}: {text}"
                log.warning("torch.compile failed (%s); running uncompiled", self.failed)
        return self.fn(*args)
