"""The public types say what API.md promises in their own docstrings, and type checkers see EdgeCaptioner."""
import ast
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from edge_caption import Caption, CaptionEvent, DecodeOptions
from edge_caption.manifest import Manifest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("cls", [Caption, CaptionEvent, DecodeOptions, Manifest], ids=lambda c: c.__name__)
def test_every_field_is_documented(cls):
    doc = cls.__doc__ or ""
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in doc]
    assert not missing, f"{cls.__name__}'s docstring does not describe {missing}"


def test_edge_captioner_is_imported_for_type_checkers_only():
    tree = ast.parse((ROOT / "edge_caption" / "__init__.py").read_text())
    guarded = [node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"]
    names = {alias.name for block in guarded for node in ast.walk(block) if isinstance(node, ast.ImportFrom)
             for alias in node.names}
    assert "EdgeCaptioner" in names
    # ...while importing the package still leaves the captioner (cv2, the decoding loop) unloaded
    code = "import sys, edge_caption; print('edge_caption.captioner' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "False"
