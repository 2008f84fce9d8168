"""A double of cuda-python's `cuda.bindings.runtime`: only the calls edge-caption makes, with the
real calling convention (every call returns a tuple whose first item is a `cudaError_t`).

Behaviours modelled, each with the source it was read from ([RT] = CUDA Runtime API reference,
docs.nvidia.com/cuda/cuda-runtime-api; [CP] = cuda-python docs,
nvidia.github.io/cuda-python/cuda-bindings/latest/module/runtime.html):
- "Device memory" is host memory behind made-up pointers no host allocation uses, 256-byte
  aligned ([RT] cudaMalloc: "suitably aligned for any kind of variable"; [RT] "Device Memory
  Accesses": at least 256 bytes), filled with 0xFF (cudaMalloc does not clear); a device pointer
  where a host one is expected, or a copy whose pointers contradict its direction, is an error.
- Work on a stream is queued and runs at cudaStreamSynchronize (or cudaFree / cudaStreamDestroy,
  which wait for it) ([RT] cudaMemcpyAsync, "API synchronization behavior").
- Copies with a pageable host buffer (anything not from cudaMallocHost / cudaHostAlloc) are
  synchronous: the stream's queued work and the copy run before the call returns, and
  `counts["pageable"]` records it ([RT] "API synchronization behavior", Memcpy / Asynchronous).
- A stream from plain cudaStreamCreate is a blocking stream: work on the legacy default stream
  waits for it (`counts["legacy_waits"]`); cudaStreamCreateWithFlags(cudaStreamNonBlocking) makes
  one that does not (`_Stream.nonblocking`) ([RT] "Stream synchronization behavior").
- A driver whose CUDA major is older than the runtime's (cuda-python 13 on a CUDA 12.6 driver)
  answers every call that needs it with cudaErrorInsufficientDriver (35); cudaDriverGetVersion and
  cudaRuntimeGetVersion still answer ([RT] cudaDriverGetVersion; CUDA Compatibility guide, minor
  version compatibility within a major).
- Capture: no allocation, free or synchronization on a capturing stream (each invalidates the
  capture), no capture on the legacy default stream; cudaStreamEndCapture of an invalidated capture
  returns cudaErrorStreamCaptureInvalidated and no graph ([RT] cudaStreamBeginCapture /
  cudaStreamEndCapture, "Prohibited and Unhandled Operations" in the CUDA Graphs guide).
- cudaGraphInstantiate can fail (`_Device.fail_instantiate`; [RT] cudaGraphInstantiate lists
  cudaErrorInvalidValue); live graphs and executables are counted, so a leak shows.

Signatures checked against cuda-python 13.4 (`cuda.bindings.runtime`) and its docs; the ones added
for pinned memory and versions (cudaMallocHost, cudaHostAlloc, cudaFreeHost, cudaDriverGetVersion,
cudaRuntimeGetVersion) from the docs only (cuda-python is not installed where they were written).
"""
from __future__ import annotations

import bisect
import ctypes
import enum
from dataclasses import dataclass, field
from typing import Callable

import numpy as np


class cudaError_t(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorInvalidDevicePointer = 17
    cudaErrorInvalidMemcpyDirection = 21
    cudaErrorInsufficientDriver = 35
    cudaErrorNoDevice = 100
    cudaErrorInvalidDevice = 101
    cudaErrorInvalidResourceHandle = 400
    cudaErrorIllegalState = 401
    cudaErrorStreamCaptureUnsupported = 900
    cudaErrorStreamCaptureInvalidated = 901
    cudaErrorStreamCaptureUnmatched = 903


class cudaMemcpyKind(enum.IntEnum):
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3
    cudaMemcpyDefault = 4


class cudaStreamCaptureMode(enum.IntEnum):
    cudaStreamCaptureModeGlobal = 0
    cudaStreamCaptureModeThreadLocal = 1
    cudaStreamCaptureModeRelaxed = 2


class cudaDeviceAttr(enum.IntEnum):
    cudaDevAttrComputeCapabilityMajor = 75
    cudaDevAttrComputeCapabilityMinor = 76


cudaStreamNonBlocking = 1
cudaHostAllocDefault = 0
_OK = cudaError_t.cudaSuccess
_BASE = 0x7E00_0000_0000          # "device" addresses: far above any heap pointer Python hands out


class _Handle:
    """cudaStream_t / cudaGraph_t / cudaGraphExec_t: opaque handles that convert to int."""

    def __init__(self, value: int = 0):
        self._value = int(value)

    def __int__(self) -> int:
        return self._value

    def getPtr(self) -> int:
        return self._value

    def __repr__(self) -> str:
        return f"<{type(self).__name__} 0x{self._value:x}>"


class cudaStream_t(_Handle):
    pass


class cudaGraph_t(_Handle):
    pass


class cudaGraphExec_t(_Handle):
    pass


@dataclass
class _Stream:
    pending: list[Callable[[], None]] = field(default_factory=list)
    capturing: list[Callable[[], None]] | None = None
    invalidated: bool = False
    nonblocking: bool = False


class ContractError(AssertionError):
    """Raised (besides the error code) where real CUDA has undefined behaviour rather than an error."""


class _Device:
    def __init__(self, devices: list[tuple[int, int]]):
        self.devices = devices
        self.current = 0
        self.allocations: dict[int, np.ndarray] = {}
        self.starts: list[int] = []
        self.next_ptr = _BASE
        self.streams: dict[int, _Stream] = {0: _Stream()}
        self.graphs: dict[int, list[Callable[[], None]]] = {}
        self.execs: dict[int, list[Callable[[], None]]] = {}
        self.pinned: dict[int, ctypes.Array] = {}       # cudaMallocHost / cudaHostAlloc buffers by address
        self.driver_version = self.runtime_version = 12060
        self.fail_instantiate = False
        self.serial = 0         # handles are never reused, so a destroyed one cannot alias a live one
        self.counts = {"malloc": 0, "free": 0, "h2d": 0, "d2h": 0, "d2d": 0, "sync": 0, "graph_launch": 0,
                       "pageable": 0, "host_alloc": 0, "legacy_waits": 0}

    def handle(self, base: int) -> int:
        self.serial += 1
        return base + self.serial

    def driver_too_old(self) -> bool:
        return self.driver_version // 1000 < self.runtime_version // 1000

    def is_pinned(self, ptr: int, nbytes: int) -> bool:
        for start, buffer in self.pinned.items():
            if start <= ptr and ptr + nbytes <= start + ctypes.sizeof(buffer):
                return True
        return False

    # ---- pointers -------------------------------------------------------------------------
    def find(self, ptr: int, nbytes: int) -> tuple[np.ndarray, int] | None:
        """(allocation, offset) holding [ptr, ptr+nbytes), or None when ptr is not device memory."""
        i = bisect.bisect_right(self.starts, ptr) - 1
        if i < 0:
            return None
        start = self.starts[i]
        buffer = self.allocations[start]
        offset = ptr - start
        if offset > buffer.nbytes or (offset == buffer.nbytes and nbytes):
            return None
        if offset + nbytes > buffer.nbytes:
            raise ContractError(f"access of {nbytes} bytes at 0x{ptr:x} runs past its allocation of "
                                f"{buffer.nbytes} bytes at 0x{start:x}")
        return buffer, offset

    def view(self, ptr: int, nbytes: int) -> np.ndarray:
        found = self.find(ptr, nbytes)
        if found is None:
            raise ContractError(f"0x{ptr:x} is not device memory")
        buffer, offset = found
        return buffer[offset:offset + nbytes]

    def capturing_global(self) -> bool:
        return any(s.capturing is not None for s in self.streams.values())

    def invalidate_captures(self) -> None:
        for s in self.streams.values():
            if s.capturing is not None:
                s.invalidated = True


_STATE = _Device([(8, 7)])


def reset(devices: list[tuple[int, int]] | None = None) -> None:
    """A fresh device (tests): compute capabilities of the GPUs present, [] for none."""
    global _STATE
    _STATE = _Device([(8, 7)] if devices is None else list(devices))


def state() -> _Device:
    return _STATE


def _host(ptr: int, nbytes: int) -> np.ndarray:
    if _STATE.find(ptr, 0) is not None:
        raise ContractError(f"0x{ptr:x} is device memory where a host pointer was expected")
    if nbytes == 0:
        return np.empty(0, np.uint8)
    return np.frombuffer((ctypes.c_char * nbytes).from_address(ptr), dtype=np.uint8)


def _ptr(value) -> int:
    if isinstance(value, np.ndarray):
        return value.ctypes.data
    return int(value)


# ---- device ---------------------------------------------------------------------------------
def cudaGetDeviceCount():
    if _STATE.driver_too_old():
        return (cudaError_t.cudaErrorInsufficientDriver, 0)
    n = len(_STATE.devices)
    return (_OK, n) if n else (cudaError_t.cudaErrorNoDevice, 0)


def cudaSetDevice(device: int):
    if _STATE.driver_too_old():
        return (cudaError_t.cudaErrorInsufficientDriver,)
    if not 0 <= device < len(_STATE.devices):
        return (cudaError_t.cudaErrorInvalidDevice,)
    _STATE.current = device
    return (_OK,)


def cudaDeviceGetAttribute(attr: cudaDeviceAttr, device: int):
    if not 0 <= device < len(_STATE.devices):
        return (cudaError_t.cudaErrorInvalidDevice, 0)
    major, minor = _STATE.devices[device]
    if attr == cudaDeviceAttr.cudaDevAttrComputeCapabilityMajor:
        return (_OK, major)
    if attr == cudaDeviceAttr.cudaDevAttrComputeCapabilityMinor:
        return (_OK, minor)
    return (cudaError_t.cudaErrorInvalidValue, 0)


def cudaDriverGetVersion():
    return (_OK, _STATE.driver_version)


def cudaRuntimeGetVersion():
    return (_OK, _STATE.runtime_version)


def cudaGetErrorString(error: cudaError_t):
    return (_OK, f"{cudaError_t(error).name} (double)".encode())


def cudaGetErrorName(error: cudaError_t):
    return (_OK, cudaError_t(error).name.encode())


# ---- memory ---------------------------------------------------------------------------------
def cudaMalloc(size: int):
    if _STATE.capturing_global():      # cudaMalloc is not capturable: it invalidates a global capture
        _STATE.invalidate_captures()
        return (cudaError_t.cudaErrorStreamCaptureUnsupported, 0)
    if _STATE.driver_too_old():
        return (cudaError_t.cudaErrorInsufficientDriver, 0)
    if not _STATE.devices:
        return (cudaError_t.cudaErrorNoDevice, 0)
    ptr = _STATE.next_ptr
    _STATE.next_ptr += (max(int(size), 1) + 511) // 256 * 256     # 256-aligned, a gap between allocations
    # cudaMalloc does not clear memory: 0xFF bytes read as NaN floats, so a reader of unwritten memory shows
    _STATE.allocations[ptr] = np.full(int(size), 0xFF, np.uint8)
    bisect.insort(_STATE.starts, ptr)
    _STATE.counts["malloc"] += 1
    return (_OK, ptr)


def cudaFree(devPtr):
    ptr = int(devPtr)
    if _STATE.capturing_global():
        _STATE.invalidate_captures()
        return (cudaError_t.cudaErrorStreamCaptureUnsupported,)
    if ptr == 0:
        return (_OK,)
    if ptr not in _STATE.allocations:
        return (cudaError_t.cudaErrorInvalidDevicePointer,)
    for target in _STATE.streams.values():      # cudaFree synchronizes the device first
        _synchronize(target)
    del _STATE.allocations[ptr]
    _STATE.starts.remove(ptr)
    _STATE.counts["free"] += 1
    return (_OK,)


def cudaMallocHost(size: int):
    """Page-locked host memory: copies to and from it are asynchronous."""
    if _STATE.driver_too_old():
        return (cudaError_t.cudaErrorInsufficientDriver, 0)
    if _STATE.capturing_global():
        _STATE.invalidate_captures()
        return (cudaError_t.cudaErrorStreamCaptureUnsupported, 0)
    buffer = (ctypes.c_uint8 * max(int(size), 1))()
    ptr = ctypes.addressof(buffer)
    _STATE.pinned[ptr] = buffer
    _STATE.counts["host_alloc"] += 1
    return (_OK, ptr)


def cudaHostAlloc(size: int, flags: int):
    return cudaMallocHost(size)


def cudaFreeHost(ptr):
    if _STATE.capturing_global():
        _STATE.invalidate_captures()
        return (cudaError_t.cudaErrorStreamCaptureUnsupported,)
    if _STATE.pinned.pop(int(ptr), None) is None:
        return (cudaError_t.cudaErrorInvalidValue,)
    return (_OK,)


def cudaMemcpyAsync(dst, src, count: int, kind: cudaMemcpyKind, stream):
    d, s, n = _ptr(dst), _ptr(src), int(count)
    stream_state = _STATE.streams.get(int(stream))
    if stream_state is None:
        return (cudaError_t.cudaErrorInvalidResourceHandle,)
    kind = cudaMemcpyKind(kind)
    if kind == cudaMemcpyKind.cudaMemcpyDefault:
        raise ContractError("edge-caption states each copy's direction; cudaMemcpyDefault needs UVA")
    dst_device, src_device = _STATE.find(d, n) is not None, _STATE.find(s, n) is not None
    expected = {cudaMemcpyKind.cudaMemcpyHostToDevice: (True, False),
                cudaMemcpyKind.cudaMemcpyDeviceToHost: (False, True),
                cudaMemcpyKind.cudaMemcpyDeviceToDevice: (True, True),
                cudaMemcpyKind.cudaMemcpyHostToHost: (False, False)}[kind]
    if (dst_device, src_device) != expected:
        raise ContractError(f"{kind.name} from 0x{s:x} ({'device' if src_device else 'host'}) to 0x{d:x} "
                            f"({'device' if dst_device else 'host'}): the pointers do not match the direction")
    if kind == cudaMemcpyKind.cudaMemcpyDeviceToDevice and n and abs(d - s) < n:
        raise ContractError("cudaMemcpyAsync: the memory areas may not overlap")
    label = {1: "h2d", 2: "d2h", 3: "d2d", 0: "h2h"}[int(kind)]

    def run() -> None:
        target = _STATE.view(d, n) if dst_device else _host(d, n)
        source = _STATE.view(s, n) if src_device else _host(s, n)
        target[:] = source
        _STATE.counts[label] = _STATE.counts.get(label, 0) + 1
        _STATE.counts[f"{label}_bytes"] = _STATE.counts.get(f"{label}_bytes", 0) + n

    host = d if kind == cudaMemcpyKind.cudaMemcpyDeviceToHost else s
    if kind in (cudaMemcpyKind.cudaMemcpyHostToDevice, cudaMemcpyKind.cudaMemcpyDeviceToHost) and n \
            and not _STATE.is_pinned(host, n) and stream_state.capturing is None:
        # pageable memory: the copy is staged through the driver and the call returns when it is done
        _STATE.counts["pageable"] += 1
        _synchronize(stream_state)
        run()
        return (_OK,)
    enqueue(int(stream), run)
    return (_OK,)


def cudaMemsetAsync(devPtr, value: int, count: int, stream):
    d, n = _ptr(devPtr), int(count)
    if _STATE.streams.get(int(stream)) is None:
        return (cudaError_t.cudaErrorInvalidResourceHandle,)
    if n and _STATE.find(d, n) is None:
        return (cudaError_t.cudaErrorInvalidValue,)

    def run() -> None:
        _STATE.view(d, n)[:] = int(value) & 0xFF
        _STATE.counts["memset"] = _STATE.counts.get("memset", 0) + 1

    enqueue(int(stream), run)
    return (_OK,)


def enqueue(stream: int, work: Callable[[], None]) -> None:
    """Queue work on a stream (or record it into the stream's capture); the TensorRT double uses it."""
    target = _STATE.streams[stream]
    if target.capturing is not None:
        target.capturing.append(work)
    elif stream == 0:
        # the legacy default stream waits for every blocking stream's work, then runs now
        for other in _STATE.streams.values():
            if other is not target and not other.nonblocking and other.pending:
                _STATE.counts["legacy_waits"] += 1
                _synchronize(other)
        work()
    else:
        target.pending.append(work)


# ---- streams --------------------------------------------------------------------------------
def cudaStreamCreate():
    return cudaStreamCreateWithFlags(0)


def cudaStreamCreateWithFlags(flags: int):
    if _STATE.driver_too_old():
        return (cudaError_t.cudaErrorInsufficientDriver, None)
    handle = _STATE.handle(0x5000_0000)
    _STATE.streams[handle] = _Stream(nonblocking=bool(int(flags) & cudaStreamNonBlocking))
    return (_OK, cudaStream_t(handle))


def cudaStreamDestroy(stream):
    handle = int(stream)
    if handle not in _STATE.streams or handle == 0:
        return (cudaError_t.cudaErrorInvalidResourceHandle,)
    _synchronize(_STATE.streams[handle])       # destroy waits for queued work, as CUDA does
    del _STATE.streams[handle]
    return (_OK,)


def _synchronize(target: _Stream) -> None:
    work, target.pending = target.pending, []
    for item in work:
        item()


def cudaStreamSynchronize(stream):
    target = _STATE.streams.get(int(stream))
    if target is None:
        return (cudaError_t.cudaErrorInvalidResourceHandle,)
    if target.capturing is not None:
        target.invalidated = True
        return (cudaError_t.cudaErrorStreamCaptureUnsupported,)
    _STATE.counts["sync"] += 1
    _synchronize(target)
    return (_OK,)


# ---- graphs ---------------------------------------------------------------------------------
def cudaStreamBeginCapture(stream, mode: cudaStreamCaptureMode):
    handle = int(stream)
    target = _STATE.streams.get(handle)
    if target is None:
        return (cudaError_t.cudaErrorInvalidResourceHandle,)
    if handle == 0:
        return (cudaError_t.cudaErrorStreamCaptureUnsupported,)    # the legacy stream cannot be captured
    if target.capturing is not None:
        return (cudaError_t.cudaErrorIllegalState,)
    _synchronize(target)        # (simplification) work queued before the capture is not part of it
    target.capturing, target.invalidated = [], False
    return (_OK,)


def cudaStreamEndCapture(stream):
    target = _STATE.streams.get(int(stream))
    if target is None or target.capturing is None:
        return (cudaError_t.cudaErrorIllegalState, None)
    work, target.capturing = target.capturing, None
    if target.invalidated:
        target.invalidated = False
        return (cudaError_t.cudaErrorStreamCaptureInvalidated, None)
    handle = _STATE.handle(0x9000_0000)
    _STATE.graphs[handle] = work
    return (_OK, cudaGraph_t(handle))


def cudaGraphInstantiate(graph, flags: int):
    work = _STATE.graphs.get(int(graph))
    if work is None or _STATE.fail_instantiate:
        return (cudaError_t.cudaErrorInvalidValue, None)
    handle = _STATE.handle(0xA000_0000)
    _STATE.execs[handle] = list(work)
    return (_OK, cudaGraphExec_t(handle))


def cudaGraphLaunch(graphExec, stream):
    work = _STATE.execs.get(int(graphExec))
    if work is None or int(stream) not in _STATE.streams:
        return (cudaError_t.cudaErrorInvalidResourceHandle,)

    def replay() -> None:
        _STATE.counts["graph_launch"] += 1
        for item in work:
            item()

    enqueue(int(stream), replay)
    return (_OK,)


def cudaGraphExecDestroy(graphExec):
    return (_OK,) if _STATE.execs.pop(int(graphExec), None) is not None else (cudaError_t.cudaErrorInvalidValue,)


def cudaGraphDestroy(graph):
    return (_OK,) if _STATE.graphs.pop(int(graph), None) is not None else (cudaError_t.cudaErrorInvalidValue,)
