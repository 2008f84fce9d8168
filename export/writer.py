"""Write a bundle directory: graphs, tokenizer.json and a manifest with every file's sha256.

The bundle is assembled in a scratch directory beside the target and moved into place only when
complete and verified, so a failed export never leaves half a bundle behind.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from edge_caption.bundle import Bundle, sha256_file
from edge_caption.errors import ExportError
from edge_caption.manifest import MANIFEST_FILE, Manifest


def check_output(output: Path, overwrite: bool) -> None:
    """Refuse to replace an existing bundle (or any file) unless asked to: exports are not undoable."""
    occupied = any(output.iterdir()) if output.is_dir() else output.exists()
    if occupied and not overwrite:
        raise ExportError(f"{output} already exists; choose another --out, or pass overwrite=True "
                          "(--overwrite) to replace it")


@contextmanager
def staging(output: Path, overwrite: bool) -> Iterator[Path]:
    """A scratch directory that becomes `output` if the block succeeds."""
    output = Path(output)
    check_output(output, overwrite)
    output.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    umask = os.umask(0)
    os.umask(umask)
    scratch.chmod(0o777 & ~umask)    # mkdtemp's 0700 would hide the bundle from other users
    try:
        yield scratch
        if output.exists():
            shutil.rmtree(output) if output.is_dir() else output.unlink()
        scratch.rename(output)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)


def write_manifest(directory: Path, manifest: Manifest) -> Manifest:
    """Checksum every file in `directory`, write manifest.json, and read the bundle back to prove it."""
    files = {
        str(path.relative_to(directory)): sha256_file(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != MANIFEST_FILE
    }
    from dataclasses import replace

    manifest = replace(manifest, files=files)
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest.to_dict(), indent=2) + "\n", encoding="utf-8")
    return Bundle.open(directory).manifest
