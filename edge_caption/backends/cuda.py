"""Device memory, a stream and copies through cuda-python (`cuda.bindings.runtime`), for the TensorRT
backend. No torch, no pycuda: cuda-python is NVIDIA's maintained binding, ships binary wheels (aarch64
too) and needs only the driver, where pycuda compiles against the CUDA toolkit.

Host copies go through page-locked staging buffers the Device keeps and reuses (a copy from pageable
numpy memory is synchronous), on a non-blocking stream (one from plain cudaStreamCreate waits for
the legacy default stream, which libraries beside us may use).

`DeviceTensor` keeps decoder memory and state on the GPU between steps. The decoding loop is plain
numpy (`np.take` to reorder beams or drop finished images, `np.repeat` to seed per-beam state), so a
DeviceTensor answers those two functions with device-to-device copies and nothing crosses to the host.
"""
from __future__ import annotations

import ctypes
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


_INSUFFICIENT_DRIVER = 35       # cudaErrorInsufficientDriver


def insufficient_driver(cudart: Any) -> BackendUnavailableError:
    """The error for cuda-python built for a newer CUDA than the driver's (cuda-python 13 on JetPack 6's
    CUDA 12.6 driver), naming the cuda-python that matches the driver."""
    def version(call: str) -> int:
        try:
            err, value = getattr(cudart, call)()[:2]
            return int(value) if int(err) == 0 else 0
        except Exception:   # a binding without the call
            return 0

    driver, runtime = version("cudaDriverGetVersion"), version("cudaRuntimeGetVersion")
    said = lambda v: f"CUDA {v // 1000}.{v % 1000 // 10}" if v else "an unknown CUDA"   # noqa: E731
    why = f"cuda-python is built for {said(runtime)}, newer than this NVIDIA driver's {said(driver)}"
    major = driver // 1000
    if major >= 13:
        fix = f'pip install "cuda-python=={major}.*"'
    elif major == 12:
        fix = 'pip install "cuda-python==12.6.*"'
    elif driver:
        fix = "update the NVIDIA driver to CUDA 12 or newer (JetPack 6.1+ on a Jetson): TensorRT 10 needs it"
    else:
        fix = ('pip install "cuda-python==12.6.*" for a CUDA 12 driver (JetPack 6), '
               '"cuda-python==13.*" for CUDA 13 (nvidia-smi shows the driver\'s CUDA version)')
    return CudaError(f"{why} (cudaErrorInsufficientDriver); install the matching one: {fix}", reason=why)


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
        if int(err) == _INSUFFICIENT_DRIVER:
            raise insufficient_driver(cudart)
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
        # non-blocking: a stream from plain cudaStreamCreate waits for the legacy default stream
        self.stream = self.call(cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking),
                                "cudaStreamCreateWithFlags")
        self.handle = int(self.stream)          # what TensorRT's *_async calls take
        self._pool: dict[int, list[int]] = {}
        self._blocks: set[int] = set()
        self._pinned: dict[int, list[int]] = {}     # free page-locked staging buffers by size class
        self._pinned_all: list[int] = []
        self._in_flight: list[tuple[int, int]] = []  # staging buffers queued copies use, free after a sync
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
        if int(err) == _INSUFFICIENT_DRIVER:
            raise insufficient_driver(self.rt)
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

    # ---- page-locked staging -------------------------------------------------------------
    def _staging(self, nbytes: int) -> tuple[int, np.ndarray]:
        """A page-locked buffer of at least nbytes (reused after the next synchronize) and a byte view of it."""
        size = _block(nbytes)
        free = self._pinned.get(size)
        if free:
            ptr = free.pop()
        else:
            ptr = self.call(self.rt.cudaMallocHost(size), "cudaMallocHost")
            self._pinned_all.append(ptr)
        self._in_flight.append((ptr, size))
        return ptr, np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(ptr))

    def download(self, tensors: Sequence["DeviceTensor"]) -> list[np.ndarray]:
        """Copy device tensors to new host arrays, with one synchronization for all of them."""
        staged = []
        for tensor in tensors:
            if tensor.nbytes:
                ptr, view = self._staging(tensor.nbytes)
                self.call(self.rt.cudaMemcpyAsync(ptr, tensor.ptr, tensor.nbytes,
                                                  self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream),
                          "cudaMemcpyAsync (device to host)")
                staged.append(view)
            else:
                staged.append(np.empty(0, np.uint8))
        self.call(self.rt.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        # copied out before the staging buffers go back to the pool
        arrays = [view.view(t.dtype).reshape(t.shape).copy() for t, view in zip(tensors, staged)]
        self._release_staging()
        return arrays

    def write(self, ptr: int, array: np.ndarray) -> None:
        """Copy a host array into device memory the caller owns (queued from a page-locked copy of it)."""
        host = np.ascontiguousarray(array)
        if host.nbytes:
            staging, view = self._staging(host.nbytes)
            view[:] = host.reshape(-1).view(np.uint8)
            self.call(self.rt.cudaMemcpyAsync(ptr, staging, host.nbytes,
                                              self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream),
                      "cudaMemcpyAsync (host to device)")

    def _release_staging(self) -> None:
        for ptr, size in self._in_flight:
            self._pinned.setdefault(size, []).append(ptr)
        self._in_flight.clear()

    def zero(self, ptr: int, nbytes: int) -> None:
        if nbytes:
            self.call(self.rt.cudaMemsetAsync(ptr, 0, nbytes, self.stream), "cudaMemsetAsync")

    def copy(self, dst: int, src: int, nbytes: int) -> None:
        if nbytes:
            self.call(self.rt.cudaMemcpyAsync(dst, src, nbytes, self.rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice,
                                              self.stream), "cudaMemcpyAsync (device to device)")

    def synchronize(self) -> None:
        self.call(self.rt.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        self._release_staging()

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
            for ptr in self._pinned_all:
                self.rt.cudaFreeHost(ptr)      # best effort: close() must release the rest too
            self._pinned_all.clear()
            self._pinned.clear()
            self._in_flight.clear()
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
