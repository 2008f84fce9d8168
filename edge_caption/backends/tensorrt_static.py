"""The TensorRT-shaped step on TensorRT: fixed device buffers, two cache sets swapped by address.

Every buffer is allocated once, for the engine's largest profile: the step's small inputs (ids,
position, beam index, beam scores) in one block written by one copy per step, the image memory,
two sets of max-length caches and the outputs. Step t reads cache set t % 2 and writes the other;
the engine's own Gather does the beam reorder on the way, so no cache is ever copied. Addresses and
shapes repeat (one pattern per row count and parity), so `_Engine.run_bound` replays each from a
CUDA graph after its first run. Per step the host sends the small inputs and reads back only the
[rows, top_k] candidates, or the logits on the steps a history-dependent processor needs them.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..decoding.static import cache_shape, check_length
from ..errors import OptionError
from ..manifest import Manifest
from .cuda import Device, DeviceTensor

_SMALL = ("input_ids", "position", "beam_index", "beam_scores")
_ALIGN = 256


class StaticStep:
    """The static step engine's buffers; `session()` starts a caption batch on them."""

    def __init__(self, engine: Any, manifest: Manifest, device: Device, fix: str):
        self.engine, self.device, self.fix = engine, device, fix
        spec = manifest.static_step
        self.top_k = spec.top_k
        self.prompt_len = len(manifest.tokenizer.prompt_ids)
        self.state = list(manifest.state)
        self.memory_names = [n for n in spec.inputs if n in manifest.memory]
        widest = engine.profiles[-1]            # name -> (min, opt, max) shapes
        self.max_rows = widest["input_ids"][2][0]
        self.max_images = widest[self.memory_names[0]][2][0] if self.memory_names else self.max_rows
        first = self.state[0]
        self.length = widest[first.input][2][first.grow_axis]
        self.memory_rows = {n: tuple(widest[n][2][1:]) for n in self.memory_names}
        self._owned: list[int] = []
        # the small inputs share one block: one host-to-device copy per step
        self.offsets, size = {}, 0
        for name in _SMALL:
            self.offsets[name] = size
            count = 1 if name == "position" else self.max_rows
            size += -(-count * engine.dtypes[name].itemsize // _ALIGN) * _ALIGN
        self.small = self._alloc(size)
        self.memory = {n: self._alloc(self.max_images * self._row_bytes(n, self.memory_rows[n])) for n in self.memory_names}
        self.caches = [{s.input: self._alloc(self._cache_bytes(s)) for s in self.state} for _ in range(2)]
        self.out_shapes = {"topk_scores": (self.top_k,), "topk_ids": (self.top_k,), "logits": (manifest.vocab_size,)}
        self.outputs = {n: self._alloc(self.max_rows * self._row_bytes(n, shape)) for n, shape in self.out_shapes.items()}

    def _alloc(self, nbytes: int) -> int:
        ptr = self.device.malloc(nbytes)
        self._owned.append(ptr)
        return ptr

    def _row_bytes(self, name: str, row: tuple[int, ...]) -> int:
        return int(np.prod(row, dtype=np.int64)) * self.engine.dtypes[name].itemsize

    def view(self, name: str, ptr: int, shape: tuple[int, ...]) -> DeviceTensor:
        return DeviceTensor(self.device, ptr, 0, shape, self.engine.dtypes[name])

    def session(self, memory: dict[str, Any], rows_per_image: int, length: int) -> "StaticSession":
        check_length(length, self.length, self.fix.format(flag=f"--max-new-tokens {length - self.prompt_len + 1}"))
        images = next(iter(memory.values())).shape[0]
        if images > self.max_images or images * rows_per_image > self.max_rows:
            beams = self.max_rows // max(self.max_images, 1)
            flags = " ".join(f for f, needed in ((f"--batch {images}", images > self.max_images),
                                                   (f"--num-beams {rows_per_image}", rows_per_image > beams)) if needed)
            raise OptionError(f"{images} images x {rows_per_image} beams is more than this engine was built for "
                              f"({self.max_images} images x {beams} beams); caption fewer frames or beams at once, or "
                              + self.fix.format(flag=flags or f"--batch {images} --num-beams {rows_per_image}"))
        for name in self.memory_names:
            value = memory[name]
            if not isinstance(value, DeviceTensor):
                value = self.device.upload(np.asarray(value), self.engine.dtypes[name])
            self.device.copy(self.memory[name], value.ptr, value.nbytes)
        # masked positions are multiplied by 0, and 0 x inf is NaN: one overflow in an earlier batch
        # must not poison this one, so each batch starts from zeroed caches (a memset, microseconds)
        for caches in self.caches:
            for s in self.state:
                self.device.zero(caches[s.input], self._cache_bytes(s))
        return StaticSession(self, images, images * rows_per_image)

    def _cache_bytes(self, spec) -> int:
        return int(np.prod(cache_shape(spec, self.max_rows, self.length))) * self.engine.dtypes[spec.input].itemsize

    def close(self) -> None:
        for ptr in self._owned:
            self.device.free(ptr)
        self._owned.clear()


class StaticSession:
    """One caption batch on the static step's buffers (decoding/static.py's StaticSession)."""

    def __init__(self, step: StaticStep, images: int, rows: int):
        self.step, self.images, self.rows = step, images, rows
        self.top_k, self.length = step.top_k, step.length
        self.parity = 0

    def run(self, input_ids: np.ndarray, position: int, beam_index: np.ndarray, beam_scores: np.ndarray) -> None:
        st, n = self.step, len(beam_index)
        values = {"input_ids": input_ids, "position": np.array([position]), "beam_index": beam_index,
                  "beam_scores": beam_scores}
        packed = np.zeros(st.offsets["beam_scores"] + n * st.engine.dtypes["beam_scores"].itemsize, np.uint8)
        for name, value in values.items():
            raw = np.ascontiguousarray(value, dtype=st.engine.dtypes[name]).reshape(-1).view(np.uint8)
            packed[st.offsets[name]:st.offsets[name] + raw.size] = raw
        st.device.write(st.small, packed)
        inputs = {name: st.view(name, st.small + st.offsets[name], np.shape(value)) for name, value in values.items()}
        for name in st.memory_names:
            inputs[name] = st.view(name, st.memory[name], (self.images, *st.memory_rows[name]))
        outputs = {name: st.view(name, st.outputs[name], (n, *shape)) for name, shape in st.out_shapes.items()}
        read, write = st.caches[self.parity], st.caches[1 - self.parity]
        for s in st.state:
            inputs[s.input] = st.view(s.input, read[s.input], cache_shape(s, self.rows, st.length))
            outputs[s.output] = st.view(s.output, write[s.input], cache_shape(s, n, st.length))
        st.engine.run_bound(inputs, outputs)
        self.parity, self.rows, self.last = 1 - self.parity, n, outputs

    def top(self) -> tuple[np.ndarray, np.ndarray]:
        values, ids = self.step.device.download([self.last["topk_scores"], self.last["topk_ids"]])
        return values.astype(np.float32, copy=False), ids.astype(np.int64, copy=False)

    def logits(self) -> np.ndarray:
        return self.step.device.download([self.last["logits"]])[0].astype(np.float32, copy=False)

    def keep(self, images: np.ndarray) -> None:
        """Compact the memory rows in place: kept images move down, in ascending order, never overlapping."""
        st = self.step
        for name in st.memory_names:
            row = st._row_bytes(name, st.memory_rows[name])
            for i, image in enumerate(int(x) for x in images):
                if image != i:
                    st.device.copy(st.memory[name] + i * row, st.memory[name] + image * row, row)
        self.images = len(images)
