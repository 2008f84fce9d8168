"""Preprocessing on the torch device (DevicePreprocessor) against the CPU path, number for number.

Run on CPU tensors in CI; the test marked gpu repeats the parity on a CUDA GPU with host
synchronisations made errors."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import edge_caption
from edge_caption.bundle import Bundle
from edge_caption.captioner import DEFAULT_BUNDLE, EdgeCaptioner
from edge_caption.errors import FrameError
from edge_caption.manifest import Preprocess
from edge_caption.preprocess import RESIZE_MODES, preprocess, to_rgb_uint8

torch = pytest.importorskip("torch")
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from edge_caption.backends.torch_cuda.preprocess import DevicePreprocessor  # noqa: E402

TOLERANCE = 1e-5          # the bound; the matmuls are exact, so every case measured here gives 0
DATA = Path(edge_caption.__file__).parent / "data"
IMAGENET = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
HALF = dict(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
DEFAULT_SPEC = Bundle.open(DEFAULT_BUNDLE).manifest.preprocess
SPECS = {
    "default-bundle": DEFAULT_SPEC,
    "vit": Preprocess(size=(224, 224), resize="bilinear", **HALF),
    # CLIP-like: shortest edge, then a crop, channels swapped for the encoder
    "shortest-edge-crop-bgr": Preprocess(size=(64, 64), resize="bicubic", shortest_edge=72, center_crop=True,
                                         color="bgr", **IMAGENET),
    "resize-to-crop": Preprocess(size=(64, 48), resize="lanczos", resize_to=(80, 70), center_crop=True, **IMAGENET),
    "crop-only": Preprocess(size=(64, 64), center_crop=True, rescale=1 / 127.5, **HALF),   # pads small frames
    **{f"mode-{m}": Preprocess(size=(61, 47), resize=m, **IMAGENET) for m in RESIZE_MODES},
    # aspect kept, bars of a colour whose channels differ, so a swapped fill shows
    "letterbox": Preprocess(size=(64, 64), fit="letterbox", fill=(200, 30, 90), **HALF),
    "letterbox-wide-bgr": Preprocess(size=(48, 80), resize="bicubic", fit="letterbox", fill=(10, 120, 250),
                                     color="bgr", **IMAGENET),
}
# (h, w): 1x1, odd, camera sizes, and the two pass orders (a tall frame shrinks its height first)
SIZES = [(1, 1), (2, 3), (37, 53), (480, 640), (720, 1280), (13, 400), (400, 13)]
RNG = np.random.default_rng(17)


def _frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Noise over a gradient: every value appears, and neighbours differ as in a real frame."""
    rng = np.random.default_rng(seed + h * 7919 + w)
    ramp = np.add.outer(np.linspace(0, 200, h), np.linspace(0, 55, w))[..., None]
    return np.clip(ramp + rng.integers(-40, 41, (h, w, 3)), 0, 255).astype(np.uint8)


def _check(spec: Preprocess, frames: list[np.ndarray], dtype=torch.float32, device: str = "cpu") -> None:
    got = DevicePreprocessor(spec, device, dtype)(frames)
    assert got.device.type == torch.device(device).type and got.dtype == dtype
    want = torch.from_numpy(preprocess(frames, spec)).to(dtype)      # fp16: the CPU numbers, rounded
    assert got.shape == want.shape
    diff = (got.cpu().double() - want.double()).abs().max().item()
    assert diff <= TOLERANCE, f"max |diff| {diff}"


# ---- parity with preprocess() ----------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_parity_grid(name, size):
    _check(SPECS[name], [_frame(*size)])


@pytest.mark.parametrize("name", ["default-bundle", "vit", "shortest-edge-crop-bgr", "mode-lanczos"])
def test_parity_on_photos_gray_and_alpha_frames(name):
    photos = [to_rgb_uint8(p) for p in sorted(DATA.glob("*.jpg"))]
    gray = to_rgb_uint8(_frame(31, 45)[..., 0])
    bgra = np.dstack([_frame(50, 70), RNG.integers(0, 256, (50, 70, 1), dtype=np.uint8)])
    for frame in [*photos, gray, to_rgb_uint8(bgra)]:
        _check(SPECS[name], [frame])


def test_mixed_sizes_in_one_call_keep_their_order():
    sizes = [(480, 640), (37, 53), (480, 640), (1, 1), (37, 53), (480, 640)]
    frames = [_frame(*s, seed=i) for i, s in enumerate(sizes)]
    _check(SPECS["mode-bicubic"], frames)
    _check(SPECS["vit"], frames[:1] * 3)        # one size: one upload, one resize for the batch


def test_plans_are_cached_per_size_and_bounded():
    from edge_caption.backends.torch_cuda import preprocess as module

    prep = DevicePreprocessor(SPECS["mode-bilinear"], "cpu")
    prep([_frame(30, 40)])
    first = prep._plans[(30, 40)]
    prep([_frame(30, 40, seed=1)])
    assert prep._plans[(30, 40)] is first
    for h in range(1, module._PLANS_KEPT + 5):
        _check(SPECS["mode-bilinear"], [_frame(h, 40)])
        prep([_frame(h, 40)])
    assert len(prep._plans) == module._PLANS_KEPT


@pytest.mark.parametrize("name", ["vit", "shortest-edge-crop-bgr", "letterbox", "letterbox-wide-bgr"])
def test_bgr_frames_swapped_on_the_device(name):
    bgr = [_frame(480, 640), _frame(37, 53)]
    got = DevicePreprocessor(SPECS[name], "cpu")(bgr, color="bgr")
    assert torch.equal(got, torch.from_numpy(preprocess([to_rgb_uint8(f) for f in bgr], SPECS[name])))
    with pytest.raises(FrameError, match="color"):
        DevicePreprocessor(SPECS[name], "cpu")(bgr, color="BGR")


def test_half_precision_is_the_cpu_numbers_rounded():
    _check(SPECS["vit"], [_frame(480, 640)], dtype=torch.float16)


def test_empty_batch():
    assert DevicePreprocessor(SPECS["vit"], "cpu")([]).shape == (0, 3, 224, 224)


def test_random_sizes_and_modes():
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    @hypothesis.settings(max_examples=60, deadline=None, derandomize=True)
    @hypothesis.given(h=st.integers(1, 90), w=st.integers(1, 90), oh=st.integers(1, 90), ow=st.integers(1, 90),
                      mode=st.sampled_from(RESIZE_MODES), seed=st.integers(0, 1000))
    def check(h, w, oh, ow, mode, seed):
        _check(Preprocess(size=(oh, ow), resize=mode, **IMAGENET), [_frame(h, w, seed)])
        _check(Preprocess(size=(oh, ow), resize=mode, fit="letterbox", fill=(seed % 256, 7, 250), **IMAGENET),
               [_frame(h, w, seed)])

    check()


def test_bad_frames_name_the_fix():
    prep = DevicePreprocessor(SPECS["vit"], "cpu")
    with pytest.raises(FrameError, match="to_rgb_uint8"):
        prep([_frame(10, 10).astype(np.float32)])
    with pytest.raises(FrameError, match="to_rgb_uint8"):
        prep([_frame(10, 10)[..., 0]])
    uncropped = Preprocess(size=(64, 64), shortest_edge=64)
    with pytest.raises(FrameError, match="center_crop"):
        DevicePreprocessor(uncropped, "cpu")([_frame(64, 96)])


# ---- no host reads -----------------------------------------------------------------------------------
class NoHostReads(TorchDispatchMode):
    """Fails on any read of a tensor's value by the host (.item(), bool(t), .tolist(), float(t))."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            raise AssertionError("the host read a tensor's value")
        return func(*args, **(kwargs or {}))


def test_the_mode_catches_host_reads():
    with pytest.raises(AssertionError, match="host read"), NoHostReads():
        torch.ones(2).sum().item()


def test_no_host_reads_in_a_call():
    frames = [_frame(720, 1280), _frame(37, 53), _frame(720, 1280)]
    for name in ("default-bundle", "shortest-edge-crop-bgr", "mode-nearest"):
        prep = DevicePreprocessor(SPECS[name], "cpu")
        with NoHostReads():
            first = prep(frames)            # builds and uploads the plans too
            again = prep(frames)            # from the cache
        assert torch.equal(first, again)


# ---- identical captions ------------------------------------------------------------------------------
def test_identical_captions_with_the_default_model():
    frames = [cv2.imread(str(p)) for p in sorted(DATA.glob("*.jpg"))]
    frames += [RNG.integers(0, 256, (480, 640, 3), dtype=np.uint8), _frame(720, 1280)[..., ::-1].copy(),
               _frame(97, 61)[..., 0]]
    with EdgeCaptioner(backend="onnxruntime") as captioner:
        prep = DevicePreprocessor(captioner.manifest.preprocess, "cpu")
        for frame in frames:
            want = captioner.caption(frame)
            got = captioner.caption_pixels(prep([to_rgb_uint8(frame)]).numpy())[0]
            assert (got.text, got.token_ids) == (want.text, want.token_ids)


# ---- on a GPU ----------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_parity_without_synchronisation():
    frames = [_frame(720, 1280), _frame(480, 640), _frame(720, 1280), _frame(1, 1), _frame(13, 400)]
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True        # must not change a number
    try:
        for name in ("default-bundle", "vit", "shortest-edge-crop-bgr", "crop-only", "mode-bicubic", "mode-nearest"):
            prep = DevicePreprocessor(SPECS[name], "cuda")
            outputs = []
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
            try:
                for _ in range(2):                       # the first call builds the plans
                    outputs.append(prep(frames))
                outputs.append(prep([f[..., ::-1].copy() for f in frames], color="bgr"))
            finally:
                torch.cuda.set_sync_debug_mode("default")
            want = preprocess(frames, SPECS[name])
            for got in outputs:
                assert got.is_cuda and np.abs(got.cpu().numpy() - want).max() <= TOLERANCE, name
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
