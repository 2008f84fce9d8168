"""Each encoding against an independent construction: a known BGR image is turned into that encoding here,
with numpy (byte layouts, YUV formulas, Bayer sampling written out), and the conversion must give it back."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from edge_caption.errors import FrameError
from edge_caption.ros.convert import (ENCODINGS, compressed_to_frame, frame_to_image_fields, image_to_frame,
                                      message_to_frame, stamp_ns)

H, W, PAD = 6, 8, 5
rng = np.random.default_rng(7)
IMAGE = rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)          # BGR
GRAY = rng.integers(0, 256, size=(H, W), dtype=np.uint8)


def image_msg(encoding: str, pixels: np.ndarray, *, pad: int = PAD, bigendian: bool = False, channels: int = 0):
    """A message holding `pixels` ([H,W(,C)] uint8 or uint16) row by row, each row padded by `pad` bytes."""
    h, w = pixels.shape[:2]
    if pixels.dtype == np.uint16:
        pixels = pixels.astype(">u2" if bigendian else "<u2")
    rows = pixels.reshape(h, -1).view(np.uint8).reshape(h, -1)
    padded = np.concatenate([rows, np.full((h, pad), 0xAB, np.uint8)], axis=1)
    return SimpleNamespace(encoding=encoding, height=h, width=w, step=padded.shape[1], is_bigendian=int(bigendian),
                           data=padded.tobytes())


def gray3(g: np.ndarray) -> np.ndarray:
    return np.repeat(g[..., None], 3, axis=2)


def test_8bit_colour_and_mono():
    alpha = rng.integers(0, 256, size=(H, W, 1), dtype=np.uint8)
    rgb = IMAGE[..., ::-1]
    cases = {"bgr8": IMAGE, "8UC3": IMAGE, "rgb8": rgb, "bgra8": np.concatenate([IMAGE, alpha], 2),
             "8UC4": np.concatenate([IMAGE, alpha], 2), "rgba8": np.concatenate([rgb, alpha], 2)}
    for encoding, pixels in cases.items():
        frame = image_to_frame(image_msg(encoding, pixels))
        assert frame.dtype == np.uint8 and frame.shape == (H, W, 3), encoding
        np.testing.assert_array_equal(frame, IMAGE, err_msg=encoding)
    for encoding in ("mono8", "8UC1"):
        np.testing.assert_array_equal(image_to_frame(image_msg(encoding, GRAY)), gray3(GRAY))


@pytest.mark.parametrize("bigendian", [False, True])
def test_16bit_scaled_from_the_full_range(bigendian):
    # v16 = v8 x 257 maps back to v8 exactly; arbitrary values round to nearest of v x 255 / 65535.
    wide = GRAY.astype(np.uint16) * 257
    np.testing.assert_array_equal(image_to_frame(image_msg("mono16", wide, bigendian=bigendian)), gray3(GRAY))
    values = rng.integers(0, 65536, size=(H, W), dtype=np.uint16)
    values[0, :4] = [0, 128, 129, 65535]
    expected = np.rint(values.astype(np.float64) * 255 / 65535).astype(np.uint8)
    assert list(expected[0, :4]) == [0, 0, 1, 255]
    np.testing.assert_array_equal(image_to_frame(image_msg("mono16", values, bigendian=bigendian)), gray3(expected))
    colour = IMAGE.astype(np.uint16) * 257
    np.testing.assert_array_equal(image_to_frame(image_msg("bgr16", colour, bigendian=bigendian)), IMAGE)
    np.testing.assert_array_equal(image_to_frame(image_msg("rgb16", colour[..., ::-1], bigendian=bigendian)), IMAGE)
    alpha = np.full((H, W, 1), 65535, np.uint16)
    np.testing.assert_array_equal(
        image_to_frame(image_msg("rgba16", np.concatenate([colour[..., ::-1], alpha], 2), bigendian=bigendian)), IMAGE)


def test_byte_order_matters():
    # the same bytes read with the other byte order are another image: is_bigendian is honoured
    values = (GRAY.astype(np.uint16) * 257) ^ 0x00FF
    little = image_to_frame(image_msg("mono16", values))
    msg = image_msg("mono16", values)
    msg.is_bigendian = 1
    assert not np.array_equal(image_to_frame(msg), little)


def _yuv_601(y, u, v):
    """ITU-R BT.601 limited range (what camera drivers emit for yuv422) -> BGR, rounded and clipped."""
    y, u, v = (np.asarray(a, np.float64) for a in (y, u, v))
    r = 1.164 * (y - 16) + 1.596 * (v - 128)
    g = 1.164 * (y - 16) - 0.813 * (v - 128) - 0.391 * (u - 128)
    b = 1.164 * (y - 16) + 2.018 * (u - 128)
    return np.clip(np.rint(np.stack([b, g, r], -1)), 0, 255).astype(np.int16)


@pytest.mark.parametrize("encoding, layout", [("yuv422", "UYVY"), ("uyvy", "UYVY"), ("yuv422_yuy2", "YUYV"),
                                              ("yuyv", "YUYV")])
def test_yuv422_byte_orders(encoding, layout):
    y = rng.integers(16, 236, size=(H, W), dtype=np.uint8)
    u = rng.integers(16, 241, size=(H, W // 2), dtype=np.uint8)
    v = rng.integers(16, 241, size=(H, W // 2), dtype=np.uint8)
    packed = np.empty((H, W // 2, 4), np.uint8)       # one 4-byte group per pair of pixels
    names = {"Y0": y[:, 0::2], "Y1": y[:, 1::2], "U": u, "V": v}
    order = ["U", "Y0", "V", "Y1"] if layout == "UYVY" else ["Y0", "U", "Y1", "V"]
    for i, name in enumerate(order):
        packed[..., i] = names[name]
    msg = image_msg(encoding, packed.reshape(H, W, 2))
    expected = _yuv_601(y, np.repeat(u, 2, axis=1), np.repeat(v, 2, axis=1))
    frame = image_to_frame(msg).astype(np.int16)
    assert np.abs(frame - expected).max() <= 2, f"{encoding}: max error {np.abs(frame - expected).max()}"


def _smooth(h: int = 32, w: int = 40) -> np.ndarray:
    """Red rising left to right, blue top to bottom, green constant: bilinear demosaicing restores it."""
    x = np.linspace(20, 230, w)
    yy = np.linspace(30, 220, h)
    r = np.tile(x, (h, 1))
    b = np.tile(yy[:, None], (1, w))
    return np.rint(np.stack([b, np.full((h, w), 120.0), r], -1)).astype(np.uint8)


def _mosaic(bgr: np.ndarray, tile: str) -> np.ndarray:
    """Sample one channel per pixel: `tile` names the 2x2 pattern at the top-left, row by row (ROS's naming)."""
    index = {"b": 0, "g": 1, "r": 2}
    out = np.empty(bgr.shape[:2], bgr.dtype)
    for k, colour in enumerate(tile):
        dy, dx = divmod(k, 2)
        out[dy::2, dx::2] = bgr[dy::2, dx::2, index[colour]]
    return out


@pytest.mark.parametrize("tile", ["rggb", "bggr", "gbrg", "grbg"])
@pytest.mark.parametrize("bits", [8, 16])
def test_bayer_tiles_are_mapped_to_the_right_opencv_codes(tile, bits):
    image = _smooth()
    mosaic = _mosaic(image, tile)
    if bits == 16:
        mosaic = mosaic.astype(np.uint16) * 257
    frame = image_to_frame(image_msg(f"bayer_{tile}{bits}", mosaic)).astype(np.int16)
    inner = (slice(2, -2), slice(2, -2))
    error = np.abs(frame[inner] - image[inner].astype(np.int16)).mean()
    swapped = np.abs(frame[inner] - image[inner][..., ::-1].astype(np.int16)).mean()
    assert error < 2.0 and swapped > 30, f"bayer_{tile}{bits}: error {error:.2f}, red/blue swapped {swapped:.2f}"


def test_every_listed_encoding_is_covered_here():
    tested = {"bgr8", "8UC3", "rgb8", "bgra8", "8UC4", "rgba8", "mono8", "8UC1", "mono16", "bgr16", "rgb16",
              "rgba16", "yuv422", "uyvy", "yuv422_yuy2", "yuyv"} | {f"bayer_{t}{b}" for t in
                                                                    ("rggb", "bggr", "gbrg", "grbg") for b in (8, 16)}
    assert set(ENCODINGS) - tested == {"bgra16"}
    colour = IMAGE.astype(np.uint16) * 257
    alpha = np.zeros((H, W, 1), np.uint16)
    np.testing.assert_array_equal(image_to_frame(image_msg("bgra16", np.concatenate([colour, alpha], 2))), IMAGE)


def test_unpadded_rows_numpy_data_and_missing_last_padding():
    msg = image_msg("bgr8", IMAGE, pad=0)
    msg.data = np.frombuffer(msg.data, np.uint8)       # rosbags gives numpy arrays
    np.testing.assert_array_equal(image_to_frame(msg), IMAGE)
    msg = image_msg("bgr8", IMAGE)
    msg.data = msg.data[:-PAD]                          # some drivers leave out the last row's padding
    np.testing.assert_array_equal(image_to_frame(msg), IMAGE)


def test_bad_messages_are_frame_errors():
    msg = image_msg("bgr8", IMAGE)
    msg.data = msg.data[: len(msg.data) // 2]
    with pytest.raises(FrameError, match="truncated"):
        image_to_frame(msg)
    with pytest.raises(FrameError, match="'32FC1' is not supported"):
        image_to_frame(image_msg("32FC1", IMAGE))
    msg = image_msg("bgr8", IMAGE)
    msg.step = W                                         # shorter than a row
    with pytest.raises(FrameError, match="step"):
        image_to_frame(msg)
    with pytest.raises(FrameError, match="even width"):
        image_to_frame(image_msg("yuv422", np.zeros((2, 3, 2), np.uint8)))
    with pytest.raises(FrameError, match="could not be decoded"):
        compressed_to_frame(SimpleNamespace(format="jpeg", data=b"\xff\xd8 not a jpeg"))
    with pytest.raises(FrameError, match="not supported"):
        compressed_to_frame(SimpleNamespace(format="tiff", data=b"II*"))
    with pytest.raises(FrameError, match="depth"):
        compressed_to_frame(SimpleNamespace(format="16UC1; compressedDepth png", data=b""))
    with pytest.raises(FrameError, match="neither"):
        message_to_frame(SimpleNamespace(text="hello"))


def test_compressed_png_and_jpeg_decoded_with_pillow_as_reference():
    import io

    from PIL import Image

    def encode(fmt: str, **kw) -> bytes:
        out = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(IMAGE[..., ::-1])).save(out, format=fmt, **kw)
        return out.getvalue()

    png = SimpleNamespace(format="png", data=encode("PNG"))
    np.testing.assert_array_equal(message_to_frame(png), IMAGE)
    jpeg_bytes = encode("JPEG", quality=95)
    reference = np.asarray(Image.open(io.BytesIO(jpeg_bytes)).convert("RGB"))[..., ::-1].astype(np.int16)
    for fmt in ("jpeg", "bgr8; jpeg compressed bgr8"):
        frame = message_to_frame(SimpleNamespace(format=fmt, data=np.frombuffer(jpeg_bytes, np.uint8)))
        assert frame.shape == (H, W, 3) and np.abs(frame.astype(np.int16) - reference).mean() < 2.0


def test_stamp_and_annotated_image_fields():
    header = SimpleNamespace(stamp=SimpleNamespace(sec=12, nanosec=345))
    assert stamp_ns(SimpleNamespace(header=header)) == 12_000_000_345
    fields = frame_to_image_fields(IMAGE)
    back = image_to_frame(SimpleNamespace(**fields))
    np.testing.assert_array_equal(back, IMAGE)
    with pytest.raises(FrameError, match="expected a uint8"):
        frame_to_image_fields(GRAY)
