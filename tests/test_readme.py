"""The README's Python blocks run as written, on the shipped model, without torch.

A block that needs what a test machine lacks (a camera, a GPU, a server, another bundle) says so in an
HTML comment right above it: `<!-- not run: the reason -->`; it is skipped with that reason. Each block
runs in a fresh namespace, in a working directory holding `street.jpg` (the README's stand-in for
the reader's own image; here the shipped scene).
"""
import re
import shutil
from pathlib import Path

import pytest

import edge_caption

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
NOT_RUN = re.compile(r"<!-- not run: (.+?) -->\n\Z")


def blocks(text: str) -> list[tuple[int, str, str | None]]:
    """(line, code, why it is not run or None) for every ```python block."""
    found = []
    for match in BLOCK.finditer(text):
        before = text[: match.start()]
        marker = NOT_RUN.search(before)
        found.append((before.count("\n") + 2, match.group(1), marker.group(1) if marker else None))
    return found


README_BLOCKS = blocks(README.read_text())


def test_blocks_are_found_and_every_marker_sits_on_a_block():
    text = README.read_text()
    assert len(README_BLOCKS) == text.count("```python") >= 4
    assert text.count("<!-- not run:") == sum(why is not None for _, _, why in README_BLOCKS)
    assert sum(why is None for _, _, why in README_BLOCKS) >= 2      # the quick look and the Python API


def test_the_parser_reads_markers():
    text = "intro\n```python\nx = 1\n```\n<!-- not run: needs a GPU -->\n```python\ny\n```\n"
    assert blocks(text) == [(3, "x = 1\n", None), (7, "y\n", "needs a GPU")]


@pytest.mark.parametrize("line, code, why", README_BLOCKS, ids=[f"README.md:{b[0]}" for b in README_BLOCKS])
def test_readme_block_runs(line, code, why, tmp_path, monkeypatch):
    if why is not None:
        pytest.skip(f"README.md:{line} is marked not run: {why}")
    shutil.copyfile(Path(edge_caption.__file__).parent / "data" / "scene.jpg", tmp_path / "street.jpg")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"README.md:{line}", "exec"), {"__name__": "__readme__"})
