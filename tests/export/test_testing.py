"""The tiny-model factories the tests, examples and quick start share (export/testing.py)."""
from __future__ import annotations

import subprocess
import sys

import pytest


def test_image_processors_come_without_a_warning_the_user_cannot_act_on():
    """Without torchvision, transformers 5 warned on every export that ViTImageProcessor falls back to PIL."""
    pytest.importorskip("transformers")
    code = ("from edge_caption.export.testing import tiny_image_processor\n"
            "for kind in ('vit', 'blip'):\n"
            "    processor = tiny_image_processor(kind)\n"
            "    assert processor.size['height'] == 32, processor.size\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "torchvision" not in done.stderr and "falling back" not in done.stderr.lower()
