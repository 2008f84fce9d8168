"""The shipped default model: the quick start, `eval`, `demo`, all without torch."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import edge_caption
from edge_caption import EdgeCaptioner
from edge_caption.captioner import DEFAULT_BUNDLE

DATA = Path(edge_caption.__file__).parent / "data"
SAMPLE_CAPTIONS = json.loads((DATA / "captions.json").read_text())["images"][0]["captions"]
# A subprocess in which `import torch` fails, as on a machine where it is not installed.
NO_TORCH = ("import sys, importlib.abc\n"
            "class Block(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('torch', 'transformers'):\n"
            "            raise ImportError(f'No module named {name!r} (blocked by the test)')\n"
            "sys.meta_path.insert(0, Block())\n"
            "from edge_caption.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")


def _cli_without_torch(*args, cwd=None):
    return subprocess.run([sys.executable, "-c", NO_TORCH, *args], capture_output=True, text=True, cwd=cwd)


def test_default_bundle_ships_small_and_verified():
    size = sum(p.stat().st_size for p in DEFAULT_BUNDLE.rglob("*") if p.is_file())
    assert size < 20e6
    with EdgeCaptioner() as captioner:
        assert captioner.bundle.path == DEFAULT_BUNDLE
        assert captioner.manifest.family in ("show-tell", "show-attend-tell", "cnn-transformer")


def test_quick_start_captions_the_sample_without_torch():
    out = _cli_without_torch("caption", "--sample")
    assert out.returncode == 0, out.stderr
    path, text = out.stdout.strip().split(": ", 1)
    assert Path(path).name == "scene.jpg"
    assert text in SAMPLE_CAPTIONS


def test_eval_and_demo_without_torch(tmp_path):
    out = _cli_without_torch("eval", "--data", "test", "--limit", "40", "--json", "--meteor", "no", "--quiet")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["images"] == 40
    assert set(result["metrics"]) == {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr", "exact"}
    demo = _cli_without_torch("demo", "--out", str(tmp_path / "demo.mp4"), "--frames", "12", "--json")
    assert demo.returncode == 0, demo.stderr
    video = cv2.VideoCapture(str(tmp_path / "demo.mp4"))
    frames = 0
    while video.read()[0]:
        frames += 1
    assert frames == 12


def test_default_model_captions_scenes_well():
    """On 200 test images; the full split's scores are in the README (bench_families.py)."""
    from edge_caption.evaluation import evaluate

    with EdgeCaptioner() as captioner:
        result = evaluate(captioner, "test", limit=200, meteor=False, progress=False)
    assert result["metrics"]["CIDEr"] >= 2.0, result["metrics"]


def test_eval_cli_errors_say_what_to_do(tmp_path):
    out = _cli_without_torch("eval", "--data", str(tmp_path / "missing"))
    assert out.returncode == 2 and "neither a split name" in out.stderr and "write_split" in out.stderr
    out = _cli_without_torch("caption")
    assert out.returncode == 2 and "--sample" in out.stderr
    out = _cli_without_torch("train", "--family", "show-tell", "--out", str(tmp_path / "x"))
    assert out.returncode == 2 and "pip install 'edge-caption[export]'" in out.stderr


def test_attention_overlay_draws_on_the_frame():
    from edge_caption.stream.overlay import annotate

    frame = cv2.imread(str(DATA / "scene.jpg"))
    with EdgeCaptioner() as captioner:
        caption = captioner.caption(frame, return_attention=True)
    drawn = annotate(frame, caption, truth=SAMPLE_CAPTIONS[0])
    assert drawn.shape == frame.shape and not np.array_equal(drawn, frame)
    if captioner.manifest.attention_grid:
        assert caption.attention.shape[1:] == _attention_shape(captioner.manifest, frame)


def _attention_shape(manifest, frame: np.ndarray) -> tuple[int, int]:
    """The maps' shape for this frame: the grid, or a letterbox bundle's frame part at the encoder's pixels."""
    if manifest.preprocess.fit == "letterbox":
        from edge_caption.preprocess import letterbox_box

        part = letterbox_box(*frame.shape[:2], manifest.preprocess.size)[2:]
        if part != tuple(manifest.preprocess.size):         # bars were added
            return part
    return manifest.attention_grid


def test_caption_batch_returns_attention_when_asked():
    frames = [cv2.imread(str(DATA / "scene.jpg")), cv2.imread(str(DATA / "sample.jpg"))]
    with EdgeCaptioner() as captioner:
        assert captioner.manifest.attention_grid == (8, 8)       # the shipped model attends (128 px in)
        batch = captioner.caption_batch(frames, return_attention=True, num_beams=2)
        alone = [captioner.caption(frame, return_attention=True, num_beams=2) for frame in frames]
        plain = captioner.caption_batch(frames, num_beams=2)
    for frame, caption, single, untraced in zip(frames, batch, alone, plain):
        assert caption.attention.shape == (len(caption.token_ids), *_attention_shape(captioner.manifest, frame))
        assert np.allclose(caption.attention, single.attention, atol=1e-5)
        assert caption.token_ids == single.token_ids == untraced.token_ids and untraced.attention is None


@pytest.mark.slow
def test_default_model_full_test_split():
    from edge_caption.evaluation import evaluate

    with EdgeCaptioner() as captioner:
        result = evaluate(captioner, "test", meteor=False, progress=False)
    assert result["images"] == 1000 and result["metrics"]["CIDEr"] >= 2.0, result["metrics"]


def test_threads_bounds_the_cpu_threads_and_keeps_the_tokens():
    from edge_caption import OptionError

    scene = str(DATA / "scene.jpg")
    with EdgeCaptioner() as every_core, EdgeCaptioner(threads=1) as one:
        assert one.caption(scene).token_ids == every_core.caption(scene).token_ids
    with pytest.raises(OptionError, match="threads must be an integer >= 1"):
        EdgeCaptioner(threads=0)


def _drawn_by_other_code(shape: str, bgr: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """Issue 19's probe: one axis-aligned shape drawn with plain OpenCV on a noisy grey 224 px frame."""
    frame = np.clip(rng.normal(128, 8, (224, 224, 3)), 0, 255).astype(np.uint8)
    c, r = (112, 112), 36
    if shape == "square":
        cv2.rectangle(frame, (c[0] - r, c[1] - r), (c[0] + r, c[1] + r), bgr, -1)
    elif shape == "circle":
        cv2.circle(frame, c, r, bgr, -1)
    else:
        cv2.fillPoly(frame, [np.array([(c[0], c[1] - r), (c[0] + r, c[1] + r), (c[0] - r, c[1] + r)])], bgr)
    return frame


def test_the_default_names_shapes_drawn_by_other_code_and_says_when_there_is_nothing():
    """Issue 19's probes: a blank frame was "a small purple star on the right", and every axis-aligned
    square a circle. Blank frames are now "an empty scene"; circles and triangles drawn by other code
    are named right; squares in the next test."""
    from edge_caption.evaluation.scenes import COLORS, EMPTY_CAPTION

    rng = np.random.default_rng(0)
    blanks = [np.full((224, 224, 3), 128, np.uint8), np.zeros((224, 224, 3), np.uint8),
              np.full((224, 224, 3), 255, np.uint8), np.full((1, 1, 3), 90, np.uint8),
              rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)]
    with EdgeCaptioner() as captioner:
        assert [captioner.caption(f).text for f in blanks] == [EMPTY_CAPTION] * len(blanks)
        for color in ("red", "green", "blue", "yellow"):
            for shape in ("circle", "triangle"):
                text = captioner.caption(_drawn_by_other_code(shape, COLORS[color], rng)).text.split()
                assert color in text and shape in text, (color, shape, text)


def test_the_default_names_a_large_axis_aligned_square():
    """The probe the issue began with (every square was "a circle", then "a diamond" while frames were
    stretched to the square input): the letterboxed default calls it a square."""
    from edge_caption.evaluation.scenes import COLORS

    rng = np.random.default_rng(0)
    with EdgeCaptioner() as captioner:
        for color in ("red", "green", "blue", "yellow"):
            text = captioner.caption(_drawn_by_other_code("square", COLORS[color], rng)).text.split()
            assert color in text and "square" in text, (color, text)
