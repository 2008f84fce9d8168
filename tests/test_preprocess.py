"""Frames -> pixel_values, against the Hugging Face (Pillow-backend) image processors."""
from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest

from edge_caption.errors import ExportError, FrameError
from edge_caption.manifest import Preprocess
from edge_caption.preprocess import preprocess, resize_uint8, to_rgb_uint8

skdata = pytest.importorskip("skimage.data")
transformers = pytest.importorskip("transformers")
PIL_Image = pytest.importorskip("PIL.Image")
from edge_caption.export.preprocessing import preprocess_spec  # noqa: E402

# Measured (transformers 5.23, Pillow 13.0): max abs diff 0 and mean abs diff 0 for ViT, BLIP,
# DeiT and ConvNeXt on astronaut, coffee, chelsea, rocket, an upscaled 48x64 crop and a portrait
# frame: the runtime resampler is bit-exact with Pillow. Kept at 0 so a drift is seen at once.
TOLERANCE = 0.0

RNG = np.random.default_rng(0)
BGR = RNG.integers(0, 256, (37, 53, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def photos():
    imgs = {n: getattr(skdata, n)() for n in ("astronaut", "coffee", "chelsea", "rocket")}
    imgs["small_upscaled"] = skdata.astronaut()[100:148, 200:264]
    imgs["portrait"] = cv2.resize(skdata.astronaut(), (240, 320), interpolation=cv2.INTER_AREA)
    return imgs


# ---- frame kinds --------------------------------------------------------------------------------
def test_bgr_default_and_rgb():
    assert np.array_equal(to_rgb_uint8(BGR), BGR[..., ::-1])
    assert np.array_equal(to_rgb_uint8(BGR, color="rgb"), BGR)


def test_gray_and_single_channel():
    gray = BGR[..., 0]
    out = to_rgb_uint8(gray)
    assert out.shape == (37, 53, 3) and all(np.array_equal(out[..., c], gray) for c in range(3))
    assert np.array_equal(to_rgb_uint8(gray[..., None]), out)


def test_four_channels_opaque_and_transparent():
    bgra = np.dstack([BGR, np.full(BGR.shape[:2], 255, np.uint8)])
    assert np.array_equal(to_rgb_uint8(bgra), BGR[..., ::-1])
    assert np.array_equal(to_rgb_uint8(bgra[..., [2, 1, 0, 3]], color="rgb"), BGR[..., ::-1])
    bgra[..., 3] = 0                      # fully transparent -> white, as HF's convert_to_rgb
    assert (to_rgb_uint8(bgra) == 255).all()


def test_non_contiguous():
    view = np.zeros((40, 60, 3), np.uint8)[::2, ::3]
    view[...] = BGR[:20, :20]
    assert np.array_equal(to_rgb_uint8(view), BGR[:20, :20, ::-1])
    assert np.array_equal(to_rgb_uint8(BGR[:, ::-1]), BGR[:, ::-1, ::-1])


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P", "LA"])
def test_pil_modes(mode):
    pil = PIL_Image.fromarray(BGR[..., ::-1].copy()).convert(mode)
    out = to_rgb_uint8(pil)
    assert out.shape == (37, 53, 3) and out.dtype == np.uint8
    if mode == "RGB":
        assert np.array_equal(out, BGR[..., ::-1])


def test_path(tmp_path):
    path = tmp_path / "f.png"
    cv2.imwrite(str(path), BGR)
    assert np.array_equal(to_rgb_uint8(path), BGR[..., ::-1])
    assert np.array_equal(to_rgb_uint8(str(path)), BGR[..., ::-1])


def test_missing_and_corrupt_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        to_rgb_uint8(tmp_path / "nope.jpg")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(FrameError, match="cannot decode"):
        to_rgb_uint8(bad)


@pytest.mark.parametrize("frame, message", [
    (None, "got None"),
    (np.zeros((0, 5, 3), np.uint8), "empty array"),
    (np.zeros((2, 3, 4, 3), np.uint8), "4 dimensions"),
    (np.zeros(5, np.uint8), "1 dimensions"),
    (np.zeros((4, 4, 2), np.uint8), "2 channels"),
    (np.zeros((4, 4, 3), np.float32), r"dtype float32.*astype\(np.uint8\).*caption_pixels"),
    (np.zeros((4, 4, 3), np.uint16), "dtype uint16; expected uint8"),
    ([[1, 2], [3, 4]], "got a builtins.list"),
])
def test_frame_errors(frame, message):
    with pytest.raises(FrameError, match=message):
        to_rgb_uint8(frame)


def test_bad_color():
    with pytest.raises(FrameError, match="color must be 'bgr' or 'rgb'"):
        to_rgb_uint8(BGR, color="rgba")


# ---- resampling ---------------------------------------------------------------------------------
_PIL_MODES = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3, "box": 4, "hamming": 5}


@pytest.mark.parametrize("mode", list(_PIL_MODES))
@pytest.mark.parametrize("size", [(20, 31), (90, 70), (37, 120), (12, 50), (60, 53)])
def test_resize_matches_pillow(mode, size):
    rgb = BGR[..., ::-1].copy()
    ref = np.asarray(PIL_Image.fromarray(rgb).resize(size[::-1], _PIL_MODES[mode]))
    assert np.array_equal(resize_uint8(rgb, size, mode), ref)


# ---- against the HF processors ------------------------------------------------------------------
def _processors():
    t = transformers
    return [
        t.ViTImageProcessorPil(), t.BlipImageProcessorPil(), t.DeiTImageProcessorPil(),
        t.ConvNextImageProcessorPil(size={"shortest_edge": 224}), t.ConvNextImageProcessorPil(),
    ]


@pytest.mark.parametrize("processor", _processors(), ids=lambda p: type(p).__name__ + str(p.size))
def test_parity_with_hf(processor, photos):
    spec = preprocess_spec(processor)
    for name, img in photos.items():
        ref = processor(images=img, return_tensors="np")["pixel_values"]
        ours = preprocess([img], spec)
        assert ours.shape == ref.shape and ours.dtype == np.float32, name
        assert np.abs(ours - ref).max() <= TOLERANCE, name


def test_batch_of_different_sizes(photos):
    spec = preprocess_spec(transformers.ViTImageProcessorPil())
    batch = preprocess([photos["coffee"], photos["chelsea"]], spec)
    assert batch.shape == (2, 3, 224, 224)


# ---- spec reader --------------------------------------------------------------------------------
def test_spec_fields():
    t = transformers
    vit = preprocess_spec(t.ViTImageProcessorPil())
    assert (vit.size, vit.resize, vit.resize_to, vit.center_crop, vit.mean) == ((224, 224), "bilinear", None, False, (0.5,) * 3)
    blip = preprocess_spec(t.BlipImageProcessorPil())
    assert (blip.size, blip.resize) == ((384, 384), "bicubic") and blip.std[0] == pytest.approx(0.26862954)
    deit = preprocess_spec(t.DeiTImageProcessorPil())
    assert (deit.size, deit.resize_to, deit.center_crop) == ((224, 224), (256, 256), True)
    cnx = preprocess_spec(t.ConvNextImageProcessorPil(size={"shortest_edge": 224}))
    assert (cnx.size, cnx.shortest_edge, cnx.center_crop) == ((224, 224), 256, True)
    assert preprocess_spec(t.ConvNextImageProcessorPil()).size == (384, 384)
    raw = preprocess_spec(t.ViTImageProcessorPil(do_rescale=False, do_normalize=False))
    assert (raw.rescale, raw.mean, raw.std) == (1.0, (0.0,) * 3, (1.0,) * 3)


def test_spec_default_without_processor():
    with pytest.warns(UserWarning, match="no image processor"):
        spec = preprocess_spec(None, 224)
    assert spec.size == (224, 224)
    with pytest.raises(ExportError, match="no image processor"):
        preprocess_spec(None, None)


@pytest.mark.parametrize("kwargs, message", [
    ({"do_resize": False}, "do_resize=False"),
    ({"size": {"shortest_edge": 224}}, "variable"),
    ({"size": {"longest_edge": 224, "shortest_edge": 100}}, "longest_edge"),
    ({"do_pad": True}, "do_pad"),
])
def test_spec_unsupported(kwargs, message):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        processor = transformers.ViTImageProcessorPil(**kwargs)
    with pytest.raises(ExportError, match=message):
        preprocess_spec(processor)


def test_spec_unknown_resample():
    processor = transformers.ViTImageProcessorPil()
    processor.resample = 7
    with pytest.raises(ExportError, match="resample"):
        preprocess_spec(processor)


def test_preprocess_spec_is_manifest_preprocess():
    assert isinstance(preprocess_spec(transformers.ViTImageProcessorPil()), Preprocess)


@pytest.mark.parametrize("h, w", [(90, 160), (160, 90), (1, 1), (3, 400), (96, 96), (480, 640)])
def test_letterbox_keeps_the_aspect_and_paints_the_bars(h, w):
    from edge_caption.preprocess import fit_uint8, letterbox_box

    rng = np.random.default_rng(h * 1000 + w)
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    spec = Preprocess(size=(96, 96), fit="letterbox", fill=(200, 30, 90))
    top, left, nh, nw = letterbox_box(h, w, (96, 96))
    assert max(nh, nw) == 96 and abs(nw * h - nh * w) <= max(h, w)      # the aspect, to a pixel's rounding
    out = fit_uint8(rgb, spec)
    assert out.shape == (96, 96, 3)
    np.testing.assert_array_equal(out[top:top + nh, left:left + nw], resize_uint8(rgb, (nh, nw), "bilinear"))
    bars = np.ones((96, 96), bool)
    bars[top:top + nh, left:left + nw] = False
    assert (out[bars] == (200, 30, 90)).all()
    assert abs((96 - nh) - 2 * top) <= 1 and abs((96 - nw) - 2 * left) <= 1      # centred


def test_letterbox_bars_follow_the_encoders_channel_order():
    frame = np.zeros((40, 80, 3), np.uint8)
    rgb = preprocess([frame], Preprocess(size=(32, 32), fit="letterbox", fill=(255, 0, 0)))[0]
    bgr = preprocess([frame], Preprocess(size=(32, 32), fit="letterbox", fill=(255, 0, 0), color="bgr"))[0]
    assert rgb[0, 0, 0] == 1.0 and rgb[2, 0, 0] == 0.0      # red in channel 0 of an RGB encoder's input
    assert bgr[2, 0, 0] == 1.0 and bgr[0, 0, 0] == 0.0      # and in channel 2 of a BGR one's
