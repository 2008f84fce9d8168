"""The builder half of the TensorRT double (see tensorrt.py): network from ONNX, profiles, timing cache.

`tensorrt.Builder`, `tensorrt.OnnxParser`, ... are these classes; version and strictness are read
from the tensorrt double at call time, so tests that switch versions switch the builder too. The
parser's rules (what TensorRT 10.3's ONNX parser refuses, with sources) are in parser.py, TensorRT
8.6's API differences in trt8.py.
"""
from __future__ import annotations

import hashlib
import json

from . import cudart
from . import tensorrt as _trt
from .parser import OnnxParser  # noqa: F401  (part of tensorrt's API, with its rules in parser.py)
from .tensorrt import MAGIC, DataType, Dims, Logger, MemoryPoolType, TensorIOMode


class IHostMemory(bytes):
    @property
    def nbytes(self) -> int:
        return len(self)


class ITensor:
    def __init__(self, name: str, dtype: DataType, shape: Dims):
        self.name, self.dtype, self.shape = name, dtype, shape


class INetworkDefinition:
    def __init__(self, flags: int):
        self.flags = flags
        self.onnx_bytes: bytes | None = None
        self._tensors: list = []

    def get_flag(self, flag: "_trt.NetworkDefinitionCreationFlag") -> bool:
        return bool(self.flags & (1 << int(flag)))

    @property
    def num_inputs(self) -> int:
        return sum(1 for t in self._tensors if t[1] == TensorIOMode.INPUT)

    @property
    def num_outputs(self) -> int:
        return sum(1 for t in self._tensors if t[1] == TensorIOMode.OUTPUT)

    def get_input(self, index: int) -> ITensor:
        name, _, dtype, shape = [t for t in self._tensors if t[1] == TensorIOMode.INPUT][index]
        return ITensor(name, dtype, shape)

    def get_output(self, index: int) -> ITensor:
        name, _, dtype, shape = [t for t in self._tensors if t[1] == TensorIOMode.OUTPUT][index]
        return ITensor(name, dtype, shape)


class IOptimizationProfile:
    def __init__(self):
        self.shapes: dict[str, tuple[Dims, Dims, Dims]] = {}

    def set_shape(self, input: str, min, opt, max) -> None:
        self.shapes[input] = (Dims(min), Dims(opt), Dims(max))


class ITimingCache:
    """Timing results, tagged with the TensorRT that measured them: a cache from another version does
    not apply (NvInfer.h, IBuilderConfig::setTimingCache: returns false on a mismatch unless told to
    ignore it)."""

    def __init__(self, entries: set[str], made_by: str | None = None):
        self.entries, self.made_by = entries, made_by or _trt.__version__

    def serialize(self) -> IHostMemory:
        return IHostMemory(json.dumps({"tensorrt": self.made_by, "entries": sorted(self.entries)}).encode())


class IBuilderConfig:
    def __init__(self, logger: Logger):
        self.logger = logger
        self.profiles: list[IOptimizationProfile] = []
        self.timing_cache: ITimingCache | None = None
        self.pool_limits: dict = {}

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        for name, (lo, opt, hi) in profile.shapes.items():
            if not (len(lo) == len(opt) == len(hi)) or any(not a <= b <= c for a, b, c in zip(lo, opt, hi)):
                self.logger.log(Logger.ERROR, f"profile for {name!r}: need min <= opt <= max, got {lo} {opt} {hi}")
                return -1
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def set_memory_pool_limit(self, pool: MemoryPoolType, pool_size: int) -> None:
        self.pool_limits[pool] = pool_size

    def create_timing_cache(self, serialized_timing_cache: bytes) -> ITimingCache:
        data = bytes(serialized_timing_cache)
        if not data:
            return ITimingCache(set())
        found = json.loads(data)
        if not isinstance(found, dict):         # not this double's format: another TensorRT's cache
            return ITimingCache(set(), "unknown")
        return ITimingCache(set(found["entries"]), found["tensorrt"])

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        if cache.made_by != _trt.__version__ and not ignore_mismatch:
            return False
        self.timing_cache = cache
        return True

    def get_timing_cache(self) -> ITimingCache | None:
        return self.timing_cache


class Builder:
    def __init__(self, logger: Logger):
        if not cudart.state().devices:
            raise TypeError("pybind11::init(): factory function returned nullptr (no CUDA device)")
        self.logger = logger
        self.timing_hits = 0

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        return INetworkDefinition(flags)

    def create_builder_config(self) -> IBuilderConfig:
        return IBuilderConfig(self.logger)

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile()

    def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> IHostMemory | None:
        if network.onnx_bytes is None:
            self.logger.log(Logger.ERROR, "build_serialized_network: the network is empty")
            return None
        inputs = [network.get_input(i) for i in range(network.num_inputs)]
        dynamic = [t for t in inputs if -1 in t.shape]
        if dynamic and not config.profiles:
            self.logger.log(Logger.ERROR, "Network has dynamic or shape inputs, but no optimization profile has been defined.")
            return None
        profiles = []
        for index, profile in enumerate(config.profiles):
            shapes = {}
            for t in inputs:
                if t.name not in profile.shapes:
                    if -1 in t.shape:
                        self.logger.log(Logger.ERROR, f"optimization profile {index} has no shape for dynamic input {t.name!r}")
                        return None
                    shapes[t.name] = [list(t.shape)] * 3
                    continue
                lo, opt, hi = profile.shapes[t.name]
                for given in (lo, opt, hi):
                    if len(given) != len(t.shape) or any(d != -1 and d != g for d, g in zip(t.shape, given)):
                        self.logger.log(Logger.ERROR, f"profile {index}: {t.name!r} {tuple(given)} does not fit {tuple(t.shape)}")
                        return None
                shapes[t.name] = [list(lo), list(opt), list(hi)]
            profiles.append(shapes)
        if config.timing_cache is not None:
            key = hashlib.sha256(network.onnx_bytes).hexdigest()[:16]
            self.timing_hits += key in config.timing_cache.entries
            config.timing_cache.entries.add(key)
        major, minor = cudart.state().devices[cudart.state().current]
        flags = _trt.NetworkDefinitionCreationFlag         # this generation's: 8.6 has no STRONGLY_TYPED
        strongly_typed = _trt.__version__.startswith("11.") or (
            hasattr(flags, "STRONGLY_TYPED") and network.get_flag(flags.STRONGLY_TYPED))
        record = {"tensorrt_version": _trt.__version__, "compute_capability": f"{major}.{minor}", "profiles": profiles,
                  "strongly_typed": strongly_typed}
        return IHostMemory(MAGIC + json.dumps(record).encode() + b"\n" + network.onnx_bytes)
