"""Which beam-search core runs: the Cython one when built, the Python reference otherwise.

`EDGE_CAPTION_BEAM=python` or `=cython` forces one (read at every search, so tests can switch it).
Both give identical outputs; the Cython core is the fast path (`benchmarks/bench_beam.py`).
"""
from __future__ import annotations

import os
import warnings

from ..errors import BackendUnavailableError, OptionError
from . import beam_reference

ENV = "EDGE_CAPTION_BEAM"
_warned = False


def _cython():
    try:
        from .. import _beam
    except ImportError:
        return None
    return _beam.Beams


def beams_class(choice: str | None = None) -> type:
    """The `Beams` class to use: `choice` ("python", "cython", "auto"), else $EDGE_CAPTION_BEAM, else "auto"."""
    global _warned
    choice = (choice or os.environ.get(ENV) or "auto").strip().lower()
    if choice == "python":
        return beam_reference.Beams
    if choice not in ("cython", "auto"):
        raise OptionError(f"{ENV}={choice!r} is not a beam-search core; use 'python', 'cython' or unset it")
    fast = _cython()
    if fast is not None:
        return fast
    if choice == "cython":
        raise BackendUnavailableError(
            f"{ENV}=cython but the Cython extension edge_caption._beam is not built; rebuild it with "
            "`pip install -e .` (Cython and a C compiler are needed at build time) or unset " + ENV)
    if not _warned:
        _warned = True
        warnings.warn("edge_caption._beam is not built: beam search runs the slower Python reference "
                      "(rebuild with `pip install -e .`)", RuntimeWarning, stacklevel=3)
    return beam_reference.Beams


def core_name() -> str:
    """'cython' or 'python': what `beams_class()` picks now, without warning (for `doctor`)."""
    forced = (os.environ.get(ENV) or "").strip().lower()
    return "python" if forced == "python" or _cython() is None else "cython"
