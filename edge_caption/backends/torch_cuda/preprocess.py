"""Frames -> `pixel_values` on the device, with the CPU path's arithmetic (`edge_caption.preprocess`).

The uint8 frames travel (4x fewer bytes than float pixels) through a pinned buffer with a
non-blocking copy; everything after that runs on the device without a host synchronisation, so a
caller may enqueue the encoder right behind it. Frames of one size (a camera's) share one upload and
one resize; frames of different sizes are grouped by size.

Exactness: each Pillow resampling pass becomes one matmul with a dense weight matrix built from
`edge_caption.preprocess`'s own 22-bit fixed-point coefficients (scaled by 2**-22), followed by the
same round-half-up and clip to 0..255. The matmul runs in float64: 8-bit values times 23-bit
coefficients summed over any number of taps a frame has stay far below 2**53, so every sum is the
exact integer Pillow's int32 arithmetic gives, whatever the global TF32 / float32-precision flags say.
Nearest resampling and the center crop are gathers through index maps computed by the CPU path's own
functions, and the last step is a lookup in the CPU path's rescale/normalise table.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import torch

from ...errors import FrameError
from ...preprocess import _PRECISION, _bands, _center_crop, _lut, _shortest_edge_size, letterbox_box, resize_uint8

# A plan step: ("rows", W) resamples the height with W [oh, H]; ("cols", Wt) the width with Wt [W, ow];
# ("gather", index, (h, w)) picks pixels of the flattened image (index 0 is a zero pixel, then 1 + y*W + x);
# ("place", fill [3] RGB, (top, left), (h, w)) sets the image into an (h, w) canvas of that colour.
_Step = tuple
_PLANS_KEPT = 16          # input sizes whose device-side plans stay cached (a camera has one; photos vary)


def weight_matrix(n_in: int, n_out: int, mode: str) -> np.ndarray:
    """float64 [n_out, n_in]: Pillow's quantised coefficients for one axis, divided by 2**22.

    Rebuilt from `preprocess._bands`, which stores each integer coefficient split as hi * 2**shift + lo."""
    shift, bands = _bands(n_in, n_out, mode)
    matrix = np.zeros((n_out, n_in), np.float64)
    for o0, o1, lo, hi, wb in bands:
        n = o1 - o0
        matrix[o0:o1, lo:hi] = wb[:n].astype(np.float64) * (1 << shift) + wb[n:]
    return matrix / _PRECISION          # a power of two: exact, and it turns Pillow's >> 22 into a floor


def _index_map(h: int, w: int) -> np.ndarray:
    # 1 + y*w + x, so that 0 can stand for the zero padding a center crop adds around a small image
    return np.arange(1, h * w + 1, dtype=np.int64).reshape(h, w, 1)


def _resize_steps(h: int, w: int, size: tuple[int, int], mode: str) -> list[_Step]:
    oh, ow = size
    if (oh, ow) == (h, w):
        return []
    if mode == "nearest":
        # resize_uint8's nearest path only indexes, so it maps an index image as it maps pixels
        return [("gather", resize_uint8(_index_map(h, w), (oh, ow), "nearest").reshape(-1), (oh, ow))]
    rows = ("rows", weight_matrix(h, oh, mode)) if oh != h else None
    cols = ("cols", np.ascontiguousarray(weight_matrix(w, ow, mode).T)) if ow != w else None
    # resize_uint8's pass order (Pillow 13): height first only when it shrinks by more than twice
    # as many pixels as the width; the order changes the rounding in between.
    vertical_first = oh < h and (h - oh) > 2 * (w - ow)
    order = (rows, cols) if vertical_first else (cols, rows)
    return [step for step in order if step is not None]


def plan(h: int, w: int, spec: Any) -> list[_Step]:
    """The steps that take an [H,W] frame to `spec.size`, as `preprocess_one` does them (host arrays)."""
    if spec.fit == "letterbox":
        top, left, nh, nw = letterbox_box(h, w, tuple(spec.size))
        steps = _resize_steps(h, w, (nh, nw), spec.resize)
        if (nh, nw) != tuple(spec.size):
            steps.append(("place", np.asarray(spec.fill, np.float64), (top, left), tuple(spec.size)))
        return steps
    if spec.shortest_edge:
        target = _shortest_edge_size(h, w, spec.shortest_edge)
    elif spec.resize_to:
        target = tuple(spec.resize_to)
    elif not spec.center_crop:
        target = tuple(spec.size)
    else:
        target = (h, w)
    steps = _resize_steps(h, w, target, spec.resize)
    if spec.center_crop and target != tuple(spec.size):
        crop = _center_crop(_index_map(*target), tuple(spec.size))
        steps.append(("gather", crop.reshape(-1), tuple(spec.size)))
    elif target != tuple(spec.size):
        raise FrameError(f"a {h}x{w} frame becomes {target[0]}x{target[1]} pixels under this spec, not the "
                         f"encoder's {spec.size[0]}x{spec.size[1]}; a shortest_edge resize needs center_crop")
    return steps


class DevicePreprocessor:
    """`preprocess(frames, spec)` on a torch device: RGB uint8 frames -> pixel values [B,3,h,w].

    `spec`: the manifest's `Preprocess`. Weight matrices and index maps are made once per input size
    and kept on the device; the call never reads a device value back on the host."""

    def __init__(self, spec: Any, device: torch.device | str, dtype: torch.dtype = torch.float32):
        self.spec = spec
        self.device = torch.device(device)
        self.dtype = dtype
        self._pinned = self.device.type == "cuda"
        self._plans: OrderedDict[tuple[int, int], list[_Step]] = OrderedDict()
        lut = _lut(float(spec.rescale), tuple(spec.mean), tuple(spec.std))     # [3, 256] float32
        self._lut = self._upload(lut.reshape(-1)).to(dtype)
        self._channel_base = self._upload(np.arange(0, 768, 256, dtype=np.int64).reshape(1, 3, 1, 1))

    def __call__(self, frames: list[np.ndarray], color: str = "rgb") -> torch.Tensor:
        """RGB uint8 [H,W,3] frames (as `to_rgb_uint8` gives them; sizes may differ) -> pixel values
        [B,3,h,w] on `device` in `dtype`, the numbers `preprocess(frames, spec)` gives.

        `color="bgr"`: the frames are OpenCV's BGR [H,W,3] arrays; the channels are swapped on the
        device, which spares the host a conversion pass over every frame."""
        if color not in ("rgb", "bgr"):
            raise FrameError(f"color must be 'rgb' or 'bgr', got {color!r}")
        swap = (color == "bgr") != (self.spec.color == "bgr")
        h, w = self.spec.size
        groups: dict[tuple[int, int], list[int]] = {}
        for i, frame in enumerate(frames):
            if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                got = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
                raise FrameError(f"frame {i}: expected a uint8 RGB array [H,W,3] (use to_rgb_uint8 first), got {got}")
            groups.setdefault(frame.shape[:2], []).append(i)
        if len(groups) <= 1:
            if not frames:
                return torch.empty((0, 3, h, w), dtype=self.dtype, device=self.device)
            return self._group(frames, swap)
        out = torch.empty((len(frames), 3, h, w), dtype=self.dtype, device=self.device)
        for members in groups.values():
            index = self._upload(np.asarray(members, np.int64))
            out.index_copy_(0, index, self._group([frames[i] for i in members], swap))
        return out

    # ---- one size --------------------------------------------------------------------------
    def _group(self, frames: list[np.ndarray], swap: bool) -> torch.Tensor:
        """Frames of one size -> [n,3,h,w]: one upload, one pass of each step for the whole group."""
        x = self._upload_frames(frames).permute(0, 3, 1, 2)           # [n,3,H,W] uint8
        bgr_in = swap != (self.spec.color == "bgr")                    # the frames' own channel order
        for step in self._plan(*frames[0].shape[:2]):
            x = self._apply(x, step, bgr_in)
        if swap:            # resampling treats channels alike, so the swap may come last
            x = x.flip(1)
        # the CPU path's table lookup: lut[c, value] for channel c (index_select: no host-side bounds read)
        index = x.long() + self._channel_base
        return self._lut.index_select(0, index.reshape(-1)).view(index.shape)

    def _plan(self, h: int, w: int) -> list[_Step]:
        key = (h, w)
        if key in self._plans:
            self._plans.move_to_end(key)
        else:
            self._plans[key] = [(kind, self._upload(array), *rest) for kind, array, *rest in plan(h, w, self.spec)]
            if len(self._plans) > _PLANS_KEPT:
                self._plans.popitem(last=False)
        return self._plans[key]

    @staticmethod
    def _apply(x: torch.Tensor, step: _Step, bgr_in: bool = False) -> torch.Tensor:
        kind, operand = step[0], step[1]
        if kind == "place":
            # the frame is still in the caller's channel order here: the RGB fill goes in that order too
            fill = (operand.flip(0) if bgr_in else operand).to(x.dtype)
            (top, left), (h, w) = step[2], step[3]
            canvas = fill.view(1, 3, 1, 1).expand(x.shape[0], 3, h, w).contiguous()
            canvas[:, :, top:top + x.shape[2], left:left + x.shape[3]] = x
            return canvas
        if kind == "gather":
            n, c = x.shape[:2]
            flat = torch.nn.functional.pad(x.reshape(n, c, -1), (1, 0))     # index 0: the zero pixel
            return flat.index_select(2, operand).view(n, c, *step[2])
        if x.dtype != torch.float64:
            x = x.to(torch.float64, memory_format=torch.contiguous_format)
        x = torch.matmul(x, operand) if kind == "cols" else torch.matmul(operand, x)
        # Pillow: (sum + 2**21) >> 22, clipped to 0..255; the matrix already holds the 2**-22
        return x.add_(0.5).floor_().clamp_(0, 255)

    # ---- host -> device ----------------------------------------------------------------------
    def _upload_frames(self, frames: list[np.ndarray]) -> torch.Tensor:
        shape = (len(frames), *frames[0].shape)
        if not self._pinned:
            return torch.from_numpy(np.stack(frames)).to(self.device)
        # torch's caching host allocator keeps this block from reuse until the copy has run
        staging = torch.empty(shape, dtype=torch.uint8, pin_memory=True)
        np.stack(frames, out=staging.numpy())
        return staging.to(self.device, non_blocking=True)

    def _upload(self, array: np.ndarray) -> torch.Tensor:
        """A host constant -> the device, without the synchronisation a pageable copy implies."""
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        if not self._pinned:
            return tensor.to(self.device)
        return tensor.pin_memory().to(self.device, non_blocking=True)
