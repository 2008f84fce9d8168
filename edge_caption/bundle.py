"""Open an engine bundle: read its manifest, verify every checksum, say how to fix what is wrong."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from .errors import BundleError, BundleNotFoundError
from .manifest import MANIFEST_FILE, Manifest

_REEXPORT = "re-export it with `edge-caption export --model MODEL --out {path}`"


def not_a_bundle(path: str | Path) -> BundleNotFoundError:
    """The error for a path without a manifest: what is there instead, and what to run."""
    path = Path(path).expanduser()
    if not path.exists():
        near = _similar_bundle(path)
        return BundleNotFoundError(
            f"no bundle at {path}: " + (f"did you mean {near}? " if near else "")
            + "pass the path of a bundle directory (NAME.ecap) made by `edge-caption export`, "
            "or leave it out to use the shipped default model")
    if (path / "config.json").is_file():
        # A Hugging Face model folder (or one from `edge-caption train`): never run something else in its place.
        name = path.name or path.resolve().name
        out = path.with_name(f"{name}.ecap") if path.name else Path(f"{name}.ecap")
        return BundleNotFoundError(
            f"{path} is a model folder (it has config.json but no {MANIFEST_FILE}), not a bundle: export it "
            f"first with `edge-caption export --model {path} --out {out}`, then use {out}")
    return BundleNotFoundError(f"{path} is not a bundle: it has no {MANIFEST_FILE}; {_REEXPORT.format(path=path)}")


def _similar_bundle(path: Path) -> Path | None:
    """A bundle beside `path` whose name is close to its name (a typo), if there is one."""
    import difflib

    try:
        names = [p.name for p in path.parent.iterdir() if (p / MANIFEST_FILE).is_file()]
    except OSError:
        return None
    close = difflib.get_close_matches(path.name, names, n=1, cutoff=0.75)
    return path.with_name(close[0]) if close else None


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: Manifest

    def file(self, relative: str) -> Path:
        return self.path / relative

    @classmethod
    def open(cls, path: str | Path, *, verify: bool = True) -> "Bundle":
        path = Path(path).expanduser()
        manifest_path = path / MANIFEST_FILE
        if not manifest_path.is_file():
            raise not_a_bundle(path)
        try:
            data = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BundleError(f"{manifest_path} is not valid JSON ({exc}); {_REEXPORT.format(path=path)}") from exc
        manifest = Manifest.from_dict(data, where=str(manifest_path))
        bundle = cls(path, manifest)
        if verify:
            bundle.verify()
        return bundle

    def verify(self) -> None:
        """Check every file the manifest lists against its sha256; report all problems at once."""
        problems = []
        needed = {self.manifest.encoder.file, self.manifest.decoder_step.file, self.manifest.tokenizer.file}
        for name in sorted(needed - set(self.manifest.files)):
            problems.append(f"{name} has no checksum in the manifest")
        for name, expected in sorted(self.manifest.files.items()):
            target = self.path / name
            if not target.is_file():
                problems.append(f"{name} is missing")
            elif sha256_file(target) != expected:
                problems.append(f"{name} does not match its checksum (altered or corrupt)")
        if problems:
            listed = "\n  - ".join(problems)
            raise BundleError(f"bundle {self.path} failed verification:\n  - {listed}\n"
                              f"Restore the original files or {_REEXPORT.format(path=self.path)}")
