"""A double of cuda-python's `cuda.bindings.runtime`: only the calls edge-caption makes, with the
real calling convention (every call returns a tuple whose first item is a `cudaError_t`).

"Device memory" is host memory behind made-up integer pointers in a range no host allocation
uses, so a device pointer handed to host code (or a host pointer to a device copy) is an error
here instead of silently working. Work on a stream is queued and runs at `cudaStreamSynchronize`
(pinned-memory semantics, the strictest the docs allow): reading a download before synchronizing
reads stale bytes, exactly the bug it would be on a GPU. Capture follows the CUDA docs: no
allocation, free or synchronization on a capturing stream (each invalidates the capture), no
capture on the legacy default stream.

Signatures checked against cuda-python 13.4 (`cuda.bindings.runtime`) and its docs
(https://nvidia.github.io/cuda-python/cuda-bindings/latest/module/runtime.html).
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
        self.counts = {"malloc": 0, "free": 0, "h2d": 0, "d2h": 0, "d2d": 0, "sync": 0, "graph_launch": 0}

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
    n = len(_STATE.devices)
    return (_OK, n) if n else (cudaError_t.cudaErrorNoDevice, 0)


def cudaSetDevice(device: int):
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


def cudaGetErrorString(error: cudaError_t):
    return (_OK, f"{cudaError_t(error).name} (double)".encode())


def cudaGetErrorName(error: cudaError_t):
    return (_OK, cudaError_t(error).name.encode())


# ---- memory ---------------------------------------------------------------------------------
def cudaMalloc(size: int):
    if _STATE.capturing_global():      # cudaMalloc is not capturable: it invalidates a global capture
        _STATE.invalidate_captures()
        return (cudaError_t.cudaErrorStreamCaptureUnsupported, 0)
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
        work()                  # the legacy default stream: run now, after nothing
    else:
        target.pending.append(work)


# ---- streams --------------------------------------------------------------------------------
def cudaStreamCreate():
    handle = 0x5000 + len(_STATE.streams)
    _STATE.streams[handle] = _Stream()
    return (_OK, cudaStream_t(handle))


def cudaStreamCreateWithFlags(flags: int):
    return cudaStreamCreate()


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
    handle = 0x9000 + len(_STATE.graphs)
    _STATE.graphs[handle] = work
    return (_OK, cudaGraph_t(handle))


def cudaGraphInstantiate(graph, flags: int):
    work = _STATE.graphs.get(int(graph))
    if work is None:
        return (cudaError_t.cudaErrorInvalidValue, None)
    handle = 0xA000 + len(_STATE.execs)
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
