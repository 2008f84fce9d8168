"""Device memory, a stream and copies through cuda-python (`cuda.bindings.runtime`), for the TensorRT
backend. No torch, no pycuda: cuda-python is NVIDIA's maintained binding, ships binary wheels (aarch64
too) and needs only the driver, where pycuda compiles against the CUDA toolkit.

`DeviceTensor` keeps decoder memory and state on the GPU between steps. The decoding loop is plain
numpy (`np.take` to reorder beams or drop finished images, `np.repeat` to seed per-beam state), so a
DeviceTensor answers those two functions with device-to-device copies and nothing crosses to the host.
"""
from __future__ import annotations

import importlib
import weakref
from typing import Any, Sequence

import numpy as np

from ..errors import BackendUnavailableError, missing_extra

_MIN_BLOCK = 256        # cudaMalloc's alignment; also the size of an empty tensor's buffer


def load_cudart() -> Any:
    """cuda-python's runtime module: `cuda.bindings.runtime` (12.6+), else the older `cuda.cudart`."""
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise missing_extra("cuda-python", "tensorrt")


def cuda_device_count() -> int:
    """GPUs the NVIDIA driver offers, asked through libcuda itself (no torch, no cuda-python); 0
    without a driver. What backend="auto" checks before it imports anything heavy."""
    import ctypes

    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    count = ctypes.c_int(0)
    if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return count.value


class CudaError(BackendUnavailableError):
    """A CUDA runtime call failed."""


def _block(nbytes: int) -> int:
    # power-of-two size classes: a growing KV cache reuses a handful of blocks instead of one per length
    size = _MIN_BLOCK
    while size < nbytes:
        size *= 2
    return size


class Device:
    """One GPU, one non-default stream (CUDA graphs cannot capture the legacy stream), a block pool.

    Blocks are recycled in stream order: every use of a block is queued on our one stream, so a block
    freed by Python and handed out again is only written after the work that read it (the argument
    PyTorch's caching allocator makes)."""

    def __init__(self, cudart: Any, index: int = 0):
        self.rt = cudart
        err, count = cudart.cudaGetDeviceCount()[:2]
        if int(err) != 0 or count == 0:
            raise BackendUnavailableError(f"no CUDA GPU is usable here ({self.error_name(err)}); "
                                          "check the driver with nvidia-smi, or use backend=\"onnxruntime\"",
                                          reason=f"no CUDA GPU is usable here ({self.error_name(err)})")
        if not 0 <= index < count:
            raise BackendUnavailableError(f"no CUDA device {index}: this machine has {count}; pass device=0..{count - 1}",
                                          reason=f"no CUDA device {index} (this machine has {count})")
        self.index = index
        self.call(cudart.cudaSetDevice(index), "cudaSetDevice")
        attr = cudart.cudaDeviceAttr
        major = self.call(cudart.cudaDeviceGetAttribute(attr.cudaDevAttrComputeCapabilityMajor, index), "cudaDeviceGetAttribute")
        minor = self.call(cudart.cudaDeviceGetAttribute(attr.cudaDevAttrComputeCapabilityMinor, index), "cudaDeviceGetAttribute")
        self.compute_capability = f"{major}.{minor}"
        self.stream = self.call(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self.handle = int(self.stream)          # what TensorRT's *_async calls take
        self._pool: dict[int, list[int]] = {}
        self._blocks: set[int] = set()
        self._host_refs: list[np.ndarray] = []  # host arrays queued copies read or write, kept until sync
        self.closed = False

    # ---- errors ---------------------------------------------------------------------------
    def error_name(self, err: Any) -> str:
        try:
            return self.rt.cudaGetErrorName(err)[1].decode()
        except Exception:  # pragma: no cover - a binding without the name table
            return str(err)

    def call(self, result: tuple, what: str) -> Any:
        """cuda-python returns (err, *values): raise on an error, else the value(s)."""
        err, values = result[0], result[1:]
        if int(err) != 0:
            raise CudaError(f"{what} failed: {self.error_name(err)}; check the GPU with `edge-caption doctor`, "
                            "or use backend=\"onnxruntime\"", reason=f"{what} failed: {self.error_name(err)}")
        return values[0] if len(values) == 1 else (values or None)

    # ---- memory ---------------------------------------------------------------------------
    def malloc(self, nbytes: int) -> int:
        ptr = self.call(self.rt.cudaMalloc(max(nbytes, _MIN_BLOCK)), "cudaMalloc")
        self._blocks.add(ptr)
        return ptr

    def free(self, ptr: int) -> None:
        if ptr in self._blocks:
            self._blocks.discard(ptr)
            self.call(self.rt.cudaFree(ptr), "cudaFree")

    def _take_block(self, nbytes: int) -> tuple[int, int]:
        size = _block(nbytes)
        free = self._pool.get(size)
        return (free.pop() if free else self.malloc(size)), size

    def _give_back(self, ptr: int, size: int) -> None:
        if not self.closed:
            self._pool.setdefault(size, []).append(ptr)

    def empty(self, shape: Sequence[int], dtype: Any) -> "DeviceTensor":
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        ptr, size = self._take_block(nbytes)
        return DeviceTensor(self, ptr, size, tuple(int(d) for d in shape), dtype)

    def upload(self, array: np.ndarray, dtype: Any = None) -> "DeviceTensor":
        host = np.ascontiguousarray(array, dtype=dtype or array.dtype)
        tensor = self.empty(host.shape, host.dtype)
        self.write(tensor.ptr, host)
        return tensor

    def download(self, tensors: Sequence["DeviceTensor"]) -> list[np.ndarray]:
        """Copy device tensors to new host arrays, with one synchronization for all of them."""
        arrays = [np.empty(t.shape, t.dtype) for t in tensors]
        for tensor, host in zip(tensors, arrays):
            if host.nbytes:
                self.call(self.rt.cudaMemcpyAsync(host.ctypes.data, tensor.ptr, host.nbytes,
                                                  self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream),
                          "cudaMemcpyAsync (device to host)")
        self.synchronize()
        return arrays

    def write(self, ptr: int, array: np.ndarray) -> None:
        """Copy a host array into device memory the caller owns (queued; the array is kept alive)."""
        host = np.ascontiguousarray(array)
        if host.nbytes:
            self._host_refs.append(host)
            self.call(self.rt.cudaMemcpyAsync(ptr, host.ctypes.data, host.nbytes,
                                              self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream),
                      "cudaMemcpyAsync (host to device)")

    def zero(self, ptr: int, nbytes: int) -> None:
        if nbytes:
            self.call(self.rt.cudaMemsetAsync(ptr, 0, nbytes, self.stream), "cudaMemsetAsync")

    def copy(self, dst: int, src: int, nbytes: int) -> None:
        if nbytes:
            self.call(self.rt.cudaMemcpyAsync(dst, src, nbytes, self.rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice,
                                              self.stream), "cudaMemcpyAsync (device to device)")

    def synchronize(self) -> None:
        self.call(self.rt.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        self._host_refs.clear()

    def close(self) -> None:
        if self.closed:
            return
        try:
            self.synchronize()
        finally:
            self.closed = True
            for ptr in list(self._blocks):
                self.free(ptr)
            self._pool.clear()
            self.call(self.rt.cudaStreamDestroy(self.stream), "cudaStreamDestroy")


class DeviceTensor:
    """A dense row-major tensor in device memory. A pooled one (size > 0) gives its block back when
    dropped; size 0 marks a buffer its owner frees (a CUDA graph's fixed buffers)."""

    def __init__(self, device: Device, ptr: int, size: int, shape: tuple[int, ...], dtype: np.dtype):
        self.device, self.ptr, self.shape, self.dtype = device, ptr, shape, np.dtype(dtype)
        self.nbytes = int(np.prod(shape, dtype=np.int64)) * self.dtype.itemsize
        if size:
            weakref.finalize(self, device._give_back, ptr, size)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"DeviceTensor(shape={self.shape}, dtype={self.dtype}, ptr=0x{self.ptr:x})"

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        host = self.device.download([self])[0]
        return host if dtype is None else host.astype(dtype)

    def take(self, rows: Any) -> "DeviceTensor":
        """Rows gathered along axis 0, one device copy per run of consecutive source rows."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if rows.size and (rows.min() < 0 or rows.max() >= self.shape[0]):
            raise IndexError(f"row index out of range for a tensor of {self.shape[0]} rows")
        out = self.device.empty((len(rows), *self.shape[1:]), self.dtype)
        row = self.nbytes // self.shape[0] if self.shape[0] else 0
        start = 0
        for i in range(1, len(rows) + 1):
            if i == len(rows) or rows[i] != rows[i - 1] + 1:
                self.device.copy(out.ptr + start * row, self.ptr + int(rows[start]) * row, (i - start) * row)
                start = i
        return out

    def __array_function__(self, func: Any, types: Any, args: tuple, kwargs: dict) -> Any:
        # what the decoding loop does to state and memory, kept on the device
        if func is np.take:
            params = dict(zip(("a", "indices", "axis"), args), **kwargs)
            if params.get("axis") == 0 and params.get("out") is None:
                return self.take(params["indices"])
        if func is np.repeat:
            params = dict(zip(("a", "repeats", "axis"), args), **kwargs)
            if params.get("axis") == 0:
                return self.take(np.repeat(np.arange(self.shape[0]), params["repeats"]))
        raise TypeError(f"{func.__name__} is not supported on a DeviceTensor (only np.take and np.repeat along "
                        "axis 0); call np.asarray() on it first to copy it to the host")
