"""The one guarded writer for every folder we write: bundles (export, quantize, calibrate, build) and
training runs (train).

We replace only what we made. A destination that exists is replaced only when it is one of ours:
a bundle (its manifest lists every file it holds) or a training run (our marker lists every file it
holds). Never the model being read (same folder, or one inside the other, symlinks resolved), never a
folder holding files we did not write. The "already exists" error suggests --overwrite only where
overwriting is allowed, and otherwise says why it refuses.

Every write goes to a scratch folder beside the destination and moves into place only when
complete, so a failure part-way leaves the old folder as it was; a crash between setting the old
folder aside and moving the new one in is repaired by the next write to that destination.
"""
from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Iterator

from edge_caption.bundle import Bundle, sha256_file
from edge_caption.errors import ExportError
from edge_caption.manifest import MANIFEST_FILE, Manifest

BUNDLE = "bundle"
TRAINING_RUN = "training run"
TRAINING_MARKER = ".edge-caption-run.json"     # written last into a training run: the files that are ours
_OURS = {BUNDLE: MANIFEST_FILE, TRAINING_RUN: TRAINING_MARKER}


def check_destination(output: str | Path, overwrite: bool, *, kind: str = BUNDLE,
                      sources: Iterable[str | Path] = (), flag: str = "--overwrite (overwrite=True)") -> Path:
    """The resolved destination when writing a `kind` there is allowed; else an ExportError saying why.

    `sources`: the folders being read (the model being exported, the bundle being quantized); the
    destination may be none of them, nor inside one, nor hold one. `flag`: how the caller spells
    overwrite for its user."""
    if kind not in _OURS:
        raise ValueError(f"kind must be one of {list(_OURS)}, got {kind!r}")
    given = Path(output).expanduser()
    target = given.resolve()
    for source in sources:
        src = Path(source).expanduser().resolve()
        if target == src or src in target.parents or target in src.parents:
            relation = ("is" if target == src else "is inside" if src in target.parents else "holds")
            raise ExportError(f"{given} {relation} the model being read ({source}), which must stay as it "
                              f"is; nothing was written: choose an --out outside {src}")
    if not target.exists():
        return target
    if not target.is_dir():
        raise ExportError(f"{given} is a file, not a {kind} folder; nothing was written: choose another --out")
    foreign = foreign_files(target, kind)
    if foreign is None:
        return target                                   # an empty folder: nothing to lose
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        what = ("a folder of other files" if not (target / _OURS[kind]).is_file()
                else f"a {kind} with files it did not write")
        raise ExportError(f"{given} already exists and is {what} ({shown}); edge-caption replaces only a {kind} it "
                          f"wrote, so nothing was written: choose a new or empty --out, or move those files away")
    if not overwrite:
        raise ExportError(f"{given} already exists and holds a {kind}; choose another --out, or pass {flag} "
                          "to replace it")
    return target


def foreign_files(folder: Path, kind: str) -> list[str] | None:
    """The files in `folder` that are not our `kind`'s (the first few entries if it has no manifest /
    marker: enough to refuse without walking a home folder); None for an empty folder."""
    first = list(itertools.islice(folder.iterdir(), 4))
    if not first:
        return None
    listed = _listed_files(folder, kind)
    if listed is None:
        return sorted(p.name for p in first)
    present = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() or p.is_symlink())
    return [name for name in present if name not in listed and name != _OURS[kind]]


def _listed_files(folder: Path, kind: str) -> set[str] | None:
    """The files our manifest / marker in `folder` says are ours, or None when there is none to read."""
    try:
        data = json.loads((folder / _OURS[kind]).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if kind == BUNDLE:
        files = data.get("files") if isinstance(data, dict) and "format_version" in data else None
    else:
        files = data.get("files") if isinstance(data, dict) and data.get("edge_caption") == TRAINING_RUN else None
    if not isinstance(files, (dict, list)) or not all(isinstance(f, str) for f in files):
        return None
    return set(files)


@contextmanager
def staging(output: str | Path, overwrite: bool, *, kind: str = BUNDLE, sources: Iterable[str | Path] = (),
            flag: str = "--overwrite (overwrite=True)") -> Iterator[Path]:
    """A scratch folder beside `output` that replaces it when the block succeeds (check_destination's
    rules, checked before the block runs and again before the move)."""
    sources = tuple(sources)
    _restore_set_aside(Path(output).expanduser().resolve())
    target = check_destination(output, overwrite, kind=kind, sources=sources, flag=flag)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    except OSError as exc:
        raise ExportError(f"cannot write {output}: {exc.strerror or exc}; choose an --out in a folder you can "
                          "write to") from exc
    umask = os.umask(0)
    os.umask(umask)
    scratch.chmod(0o777 & ~umask)    # mkdtemp's 0700 would hide the bundle from other users
    try:
        yield scratch
        if kind == TRAINING_RUN:
            _write_marker(scratch)
        # the destination may have changed during a long export (a symlink re-pointed): check again,
        # and move to where it resolves now
        target = check_destination(output, overwrite, kind=kind, sources=sources, flag=flag)
        _move_into_place(scratch, target, output)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)


def _move_into_place(scratch: Path, target: Path, given: str | Path) -> None:
    """The old folder is set aside (`.NAME.old.*` beside it), not deleted, until the new one is in place;
    a crash between the two renames is repaired by the next write (`_restore_set_aside`)."""
    try:
        if not target.exists():
            scratch.rename(target)
            return
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
        old.rmdir()
        target.rename(old)
    except OSError as exc:      # a read-only or busy folder (a bind mount): say where, and what to do
        raise ExportError(f"cannot replace {given}: {exc.strerror or exc}; write to another --out") from exc
    try:
        scratch.rename(target)
    except BaseException as exc:
        try:
            old.rename(target)
        except OSError:
            raise ExportError(f"the new {target.name} could not be moved into place ({exc}), and the old one could "
                              f"not be put back: it is at {old}; rename it to {target} by hand") from exc
        raise
    shutil.rmtree(old, ignore_errors=True)


def _restore_set_aside(target: Path) -> None:
    """Put back an old folder a crash left set aside (its new one never moved in)."""
    if target.exists() or not target.parent.is_dir():
        return
    left = sorted(target.parent.glob(f".{target.name}.old.*"))
    if left:
        try:
            left[-1].rename(target)
        except OSError:
            pass        # then the write goes on; the set-aside folder stays where the error above names it


def _write_marker(folder: Path) -> None:
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    (folder / TRAINING_MARKER).write_text(json.dumps({"edge_caption": TRAINING_RUN, "files": files}, indent=1) + "\n",
                                          encoding="utf-8")


def write_manifest(directory: Path, manifest: Manifest) -> Manifest:
    """Checksum every file in `directory`, write manifest.json, and read the bundle back to prove it."""
    files = {
        str(path.relative_to(directory)): sha256_file(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != MANIFEST_FILE
    }
    manifest = replace(manifest, files=files)
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest.to_dict(), indent=2) + "\n", encoding="utf-8")
    return Bundle.open(directory).manifest
