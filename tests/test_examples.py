"""The README's quick start runs as written: export, caption the sample photo, same tokens as generate()."""
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parents[1]


def test_quickstart(tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py"), "--out", str(tmp_path / "q.ecap")],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "generate() gives the same tokens: True" in run.stdout


def test_readme_quick_start_is_what_ci_and_this_test_run():
    readme = (ROOT / "README.md").read_text()
    assert "python examples/quickstart.py" in readme and "python -m pytest -q" in readme


def test_git_example(tmp_path):
    """examples/git.py: a GIT model folder (CLIP image processor, BERT tokenizer) through `edge-caption export`."""
    run = subprocess.run([sys.executable, str(ROOT / "examples" / "git.py"), "--out", str(tmp_path / "g.ecap")],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "generate() gives the same tokens: True" in run.stdout


@pytest.mark.slow
def test_florence2_example(tmp_path):
    """examples/florence2.py: one task's bundle, generate()'s tokens, and another task refused."""
    run = subprocess.run([sys.executable, str(ROOT / "examples" / "florence2.py"), "--out", str(tmp_path / "f.ecap")],
                         capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "generate() gives the same tokens: True" in run.stdout
    assert "task:     <CAPTION>" in run.stdout and "another task is refused" in run.stdout
