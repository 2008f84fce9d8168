"""The CUDA beam kernels (csrc/beam_kernels.cu), loaded with ctypes: device pointers in, no torch.

ctypes rather than cuda-python or a Cython wrapper: the library has a plain C ABI and links cudart
statically, so loading it needs nothing but the NVIDIA driver at call time, and any runtime that holds
device pointers (a TensorRT binding's buffers, cuda-python allocations, `tensor.data_ptr()`) can call it.
Pointers are ints; `stream` is a cudaStream_t as an int (0: the default stream).
"""
from __future__ import annotations

import ctypes
from ctypes import c_float, c_int, c_size_t, c_void_p
from pathlib import Path

from ..errors import BackendUnavailableError

LIBRARY = Path(__file__).resolve().parent.parent / "_beam_kernels.so"
MAX_K = 64
_loaded: "BeamKernels | None | bool" = False


class BeamKernels:
    """Thin calls into the library; every failure is a BackendUnavailableError naming the CUDA error."""

    def __init__(self, lib: ctypes.CDLL):
        self.lib = lib
        signatures = {
            "ec_version": [], "ec_device_count": [ctypes.POINTER(c_int)],
            "ec_malloc": [ctypes.POINTER(c_void_p), c_size_t], "ec_free": [c_void_p],
            "ec_memcpy": [c_void_p, c_void_p, c_size_t, c_int], "ec_synchronize": [],
            "ec_logsoftmax_topk": [c_void_p, c_void_p, c_int, c_int, c_void_p, c_int, c_int, c_float, c_int, c_void_p,
                                   c_int, c_int, c_void_p, c_int, c_void_p, c_void_p, c_void_p],
            "ec_merge_candidates": [c_void_p, c_void_p, c_int, c_int, c_int, c_int, c_void_p, c_void_p, c_void_p,
                                    c_void_p],
            "ec_gather_rows": [c_void_p, c_void_p, c_void_p, c_int, c_size_t, c_void_p],
        }
        for name, args in signatures.items():
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = args, c_int
        lib.ec_error_string.argtypes, lib.ec_error_string.restype = [c_int], ctypes.c_char_p

    def _check(self, code: int, what: str) -> None:
        if code:
            message = self.lib.ec_error_string(code).decode(errors="replace")
            raise BackendUnavailableError(f"CUDA beam kernel {what} failed: {message} (error {code}); "
                                          "`edge-caption doctor` shows the GPU and driver this machine has")

    def device_count(self) -> int:
        """GPUs the driver offers; 0 without a GPU or driver."""
        count = c_int(0)
        return count.value if self.lib.ec_device_count(ctypes.byref(count)) == 0 else 0

    # --- device memory, for callers (and tests) without another CUDA binding

    def malloc(self, nbytes: int) -> int:
        ptr = c_void_p()
        self._check(self.lib.ec_malloc(ctypes.byref(ptr), nbytes), "cudaMalloc")
        return ptr.value or 0

    def free(self, ptr: int) -> None:
        self._check(self.lib.ec_free(ptr), "cudaFree")

    def to_device(self, ptr: int, array) -> None:
        self._check(self.lib.ec_memcpy(ptr, array.ctypes.data, array.nbytes, 1), "copy to device")

    def to_host(self, array, ptr: int) -> None:
        self._check(self.lib.ec_memcpy(array.ctypes.data, ptr, array.nbytes, 2), "copy to host")

    def synchronize(self) -> None:
        self._check(self.lib.ec_synchronize(), "synchronize")

    # --- the kernels

    def logsoftmax_topk(self, logits: int, logprobs: int, rows: int, vocab: int, add: int, k: int, out_values: int,
                        out_indices: int, *, history: int = 0, history_len: int = 0, history_stride: int = 0,
                        repetition_penalty: float = 1.0, no_repeat_ngram_size: int = 0, eos: int = 0, n_eos: int = 0,
                        ban_eos: bool = False, stream: int = 0) -> None:
        """Per row: log-softmax of float32 logits [rows, vocab], the processors, + add[row] (0: none),
        then the k best (float32 values, int64 token ids) into [rows, k], best first, ties to the lower id.

        logprobs [rows, vocab] (0: not kept; may equal logits) gets the processed log-probs; it is
        needed when a processor runs. history: int64 [rows, history_stride], first history_len ids."""
        if not 1 <= k <= min(MAX_K, vocab):
            raise ValueError(f"k must be 1..{min(MAX_K, vocab)}, got {k}")
        self._check(self.lib.ec_logsoftmax_topk(
            logits, logprobs, rows, vocab, history, history_len, history_stride, repetition_penalty,
            no_repeat_ngram_size, eos, n_eos, int(ban_eos), add, k, out_values, out_indices, stream),
            "logsoftmax_topk")

    def merge_candidates(self, values: int, tokens: int, batch: int, beams: int, kc: int, k: int, out_values: int,
                         out_beams: int, out_tokens: int, *, stream: int = 0) -> None:
        """Per image, the k best of its beams' sorted candidates [batch, beams, kc], in flat-index order."""
        self._check(self.lib.ec_merge_candidates(values, tokens, batch, beams, kc, k, out_values, out_beams,
                                                 out_tokens, stream), "merge_candidates")

    def gather_rows(self, src: int, dst: int, rows: int, n_rows: int, row_bytes: int, *, stream: int = 0) -> None:
        """dst[r] = src[rows[r]] (int64 row indices on the device) for n_rows rows of row_bytes bytes."""
        self._check(self.lib.ec_gather_rows(src, dst, rows, n_rows, row_bytes, stream), "gather_rows")


def load() -> BeamKernels | None:
    """The kernels, or None when the library was not built (no nvcc at install time)."""
    global _loaded
    if _loaded is False:
        _loaded = BeamKernels(ctypes.CDLL(str(LIBRARY))) if LIBRARY.exists() else None
    return _loaded
