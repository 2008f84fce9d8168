"""torch.compile (Inductor) with a way back: a function whose compilation fails runs as it is."""
from __future__ import annotations

import logging
from typing import Any, Callable

import torch

log = logging.getLogger(__name__)
# Shapes are static, so each plan (rows, cache length, options) is its own compilation of the same
# code: torch's default of 8 per function would quietly leave a busy server's later shapes uncompiled.
RECOMPILE_LIMIT = 64


class Compiled:
    """`fn` under torch.compile (shapes static: one compilation per shape, cached on disk by Inductor,
    keyed by the GPU and torch). If its first call for a shape fails to compile (an Inductor gap for
    some op on some torch), it says why once and runs `fn` uncompiled from then on: slower, still
    right. Errors once compiled (out of memory, a device assert) are the caller's, as they are."""

    def __init__(self, fn: Callable[..., Any], *, fullgraph: bool = False, options: dict[str, Any] | None = None):
        """`options`: Inductor's (torch.compile's `options`), e.g. {"combo_kernels": True}."""
        self.fn = fn
        self.compiled = torch.compile(fn, dynamic=False, fullgraph=fullgraph, options=options or None)
        self.failed: str | None = None
        self._shapes: set[tuple] = set()
        dynamo = torch._dynamo.config
        if getattr(dynamo, "recompile_limit", RECOMPILE_LIMIT) < RECOMPILE_LIMIT:
            dynamo.recompile_limit = RECOMPILE_LIMIT

    def __call__(self, *args: Any) -> Any:
        if self.failed is not None:
            return self.fn(*args)
        key = tuple(tuple(a.shape) if isinstance(a, torch.Tensor) else type(a) for a in args)
        if key in self._shapes:
            return self.compiled(*args)
        try:        # a new shape compiles: only this call may fall back
            found = self.compiled(*args)
        except torch.OutOfMemoryError:
            raise
        except Exception as exc:          # Inductor raises many kinds; the eager function still works
            text = str(exc).splitlines()[0][:300] if str(exc) else ""
            self.failed = f"{type(exc).__name__}: {text}"
            log.warning("torch.compile failed (%s); running uncompiled", self.failed)
            return self.fn(*args)
        self._shapes.add(key)
        return found
