"""The runtime on a real exported bundle: frames, batches, errors that say what to do."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from edge_caption import (BackendUnavailableError, BundleError, EdgeCaptioner, FrameError, OptionError)
from edge_caption.errors import BundleNotFoundError

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def bundle(exported):
    return exported("vit_gpt2", 1)[1]


@pytest.fixture(scope="module")
def cap(bundle):
    with EdgeCaptioner(bundle) as captioner:
        yield captioner


def test_auto_backend_says_why(cap):
    assert cap.backend_name == "onnxruntime"
    assert "onnxruntime" in cap.backend_reason and "tensorrt" in cap.backend_reason


def test_frame_kinds_agree(cap):
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    rgb = np.ascontiguousarray(bgr[..., ::-1])
    a = cap.caption(bgr)
    assert cap.caption(rgb, color="rgb").token_ids == a.token_ids
    assert cap.caption(bgr[:, ::-1][:, ::-1]).token_ids == a.token_ids   # non-contiguous view
    assert set(a.timings) == {"preprocess", "encode", "decode", "total"}
    assert isinstance(cap.caption(bgr[..., 0]).text, str)               # grayscale
    batch = cap.caption_batch([bgr, bgr[..., 0]])
    assert batch[0].token_ids == a.token_ids and len(batch) == 2


def test_image_path(cap, tmp_path):
    import cv2

    frame = np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "x.png"), frame)
    assert cap.caption(str(tmp_path / "x.png")).token_ids == cap.caption(frame).token_ids


@pytest.mark.parametrize("frame,match", [
    (None, "got None"),
    (np.zeros((0, 10, 3), np.uint8), "empty"),
    (np.zeros((10, 10, 5), np.uint8), "channels"),
    (np.zeros((10, 10, 3), np.float32), "uint8"),
    (np.zeros((2, 10, 10, 3), np.uint8), "dimensions|ndim|shape"),
    ("no/such/image.png", "not found"),
])
def test_bad_frames(cap, frame, match):
    with pytest.raises((FrameError, FileNotFoundError), match=match):
        cap.caption(frame)


def test_bad_pixels(cap):
    h, w = cap.manifest.preprocess.size
    with pytest.raises(FrameError, match="NaN"):
        cap.caption_pixels(np.full((1, 3, h, w), np.nan, np.float32))
    with pytest.raises(FrameError, match=rf"\[B,3,{h},{w}\].*shape \(1, 3, 8, 8\)"):
        cap.caption_pixels(np.zeros((1, 3, 8, 8), np.float32))
    with pytest.raises(FrameError, match="caption_batch\\(\\) takes a list"):
        cap.caption_batch(np.zeros((8, 8, 3), np.uint8))


def test_bad_options(cap, bundle):
    with pytest.raises(OptionError, match="valid options are"):
        cap.caption(np.zeros((8, 8, 3), np.uint8), beams=2)
    with pytest.raises(OptionError, match="unknown backend"):
        EdgeCaptioner(bundle, backend="cuda")
    with pytest.raises(BackendUnavailableError, match="no torch programs; re-export it with --targets onnx,torch"):
        EdgeCaptioner(bundle, backend="torch-cuda")
    with pytest.raises(BackendUnavailableError, match="no TensorRT engines; build them"):
        EdgeCaptioner(bundle, backend="tensorrt")


def test_decoding_defaults_override_the_bundle(bundle):
    with EdgeCaptioner(bundle, num_beams=3, num_return_sequences=2) as c:
        caption = c.caption(np.zeros((16, 16, 3), np.uint8))
        assert len(caption.alternatives) == 1


def test_bundle_problems(bundle, tmp_path):
    with pytest.raises(BundleNotFoundError, match="no bundle at"):
        EdgeCaptioner(tmp_path / "missing.ecap")
    copy = tmp_path / "copy.ecap"
    shutil.copytree(bundle, copy)
    with open(copy / "decoder_step.onnx", "ab") as handle:
        handle.write(b"tampered")
    (copy / "tokenizer.json").unlink()
    with pytest.raises(BundleError, match=r"decoder_step.onnx does not match its checksum(.|\n)*tokenizer.json is missing"
                                          r"(.|\n)*edge-caption export"):
        EdgeCaptioner(copy)
    shutil.rmtree(copy)
    shutil.copytree(bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["format_version"] = 99
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="format_version 99"):
        EdgeCaptioner(copy)


def test_export_refuses_to_overwrite_and_unsupported_models(bundle, tmp_path):
    import torch

    from edge_caption import ExportError
    from edge_caption.export import export

    with pytest.raises(ExportError, match="already exists"):
        export(torch.nn.Linear(2, 2), bundle)
    with pytest.raises(ExportError, match="Linear is not supported.*VisionEncoderDecoderModel"):
        export(torch.nn.Linear(2, 2), tmp_path / "x.ecap", tokenizer=object(), progress=False)
    with pytest.raises(ExportError, match="fp32 and int8 bundles"):
        export(torch.nn.Linear(2, 2), tmp_path / "x.ecap", precision="fp16")
    assert not (tmp_path / "x.ecap").exists()


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "edge_caption.cli", *args], capture_output=True, text=True)


def test_cli_caption_info_and_errors(bundle, tmp_path, cap):
    import cv2

    frame = np.random.default_rng(2).integers(0, 256, (30, 30, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), frame)
    out = _cli("caption", str(bundle), str(tmp_path), "--num-beams", "2", "--json")
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout.splitlines()[0])
    assert row["image"].endswith("a.png")
    assert tuple(row["token_ids"]) == cap.caption(frame, num_beams=2).token_ids
    info = _cli("info", str(bundle), "--json")
    assert info.returncode == 0 and json.loads(info.stdout)["manifest"]["family"] == "vision-encoder-decoder"
    bad = _cli("caption", "-m", str(bundle), str(tmp_path / "none.png"))
    assert bad.returncode == 2 and "no image at" in bad.stderr
    assert _cli("doctor").returncode == 0


def test_runtime_never_imports_torch(bundle):
    code = (f"import sys, numpy as np; from edge_caption import EdgeCaptioner; "
            f"c = EdgeCaptioner({str(bundle)!r}); c.caption(np.zeros((8, 8, 3), np.uint8)); "
            f"assert 'torch' not in sys.modules and 'transformers' not in sys.modules")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_letterboxed_attention_maps_cover_the_frame_not_the_bars():
    from edge_caption.captioner import _maps
    from edge_caption.manifest import Preprocess

    trace = np.zeros((2, 36), np.float32)
    trace[0, 6 * 1 + 0] = 1.0          # grid row 1, column 0: input rows 16-32, the frame's top-left
    stretched = _maps(trace, (6, 6), Preprocess(size=(96, 96)), (540, 960))
    assert stretched.shape == (2, 6, 6) and stretched[0, 1, 0] == 1.0
    boxed = _maps(trace, (6, 6), Preprocess(size=(96, 96), fit="letterbox"), (540, 960))
    assert boxed.shape == (2, 54, 96)                   # a 16:9 frame fills 54 of the 96 rows, from row 21
    y, x = np.unravel_index(boxed[0].argmax(), boxed[0].shape)
    assert y < 12 and x < 16
    square = _maps(trace, (6, 6), Preprocess(size=(96, 96), fit="letterbox"), (200, 200))
    assert square.shape == (2, 6, 6)                    # no bars: the grid is the frame
