"""The prompt a caption asks for must be the one its bundle was exported with.

A prompt is baked in at export (BLIP's text prefix becomes the decoder's first ids; Florence-2's task
token becomes part of the encoder graph), so the runtime cannot change it: `prompt=` on a caption
call only states which one is expected, and another one is an `OptionError` that says how to get a
bundle for it.
"""
from __future__ import annotations

from typing import Any

from .errors import OptionError


def check_prompt(manifest: Any, prompt: str | None) -> None:
    """Accept `prompt` if it is None or the bundle's own; else an OptionError naming both and the fix."""
    if prompt is None or prompt == manifest.prompt:
        return
    export = f'edge-caption export --model MODEL_DIR --prompt "{prompt}" --out NAME.ecap'
    if manifest.family == "florence2":
        raise OptionError(f"this bundle was exported for the Florence-2 task {manifest.prompt!r}; its encoder holds "
                          f"that task's prompt, so it cannot run {prompt!r}. Export a bundle for {prompt!r} from "
                          f"the same checkpoint: {export}")
    has = f"the prompt {manifest.prompt!r}" if manifest.prompt is not None else "no text prompt"
    raise OptionError(f"this bundle was exported with {has}; a prompt is fixed at export, so it cannot caption "
                      f"with {prompt!r}. Export a bundle with it: {export}")
