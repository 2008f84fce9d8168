"""TensorRT 8.6 (JetPack 6.0) where its Python API differs from 10.x in what our code touches.

`install(monkeypatch, version="8.6.2")` swaps these in for the 10.x enums, so code written for 10.x
meets what an 8.6 install would give it. Modelled, each with its source:

- `NetworkDefinitionCreationFlag` has EXPLICIT_BATCH (0) and the deprecated EXPLICIT_PRECISION (1),
  no STRONGLY_TYPED: NVIDIA/TensorRT `include/NvInfer.h` on release/8.6 (as read for issue 18;
  STRONGLY_TYPED = 1 arrived with 9.x/10.x), DESIGN.md "Facts worth knowing";
- `DataType` has no INT64 (nor BF16): the same header (`DataType` kFLOAT .. kFP8); the 8.6 ONNX
  parser casts INT64 network inputs and outputs down to INT32 (onnx-tensorrt release/8.6-GA
  `docs/operators.md`, "TensorRT will attempt to cast down INT64 to INT32"), see parser.py;
- the parser reads opsets up to 17 (same document), see parser.py.
"""
from __future__ import annotations

import enum

from . import tensorrt


class NetworkDefinitionCreationFlag(enum.IntEnum):
    EXPLICIT_BATCH = 0
    EXPLICIT_PRECISION = 1


class DataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    FP8 = 6


# the 10.x enums, as tensorrt.py defines them
CURRENT = {"NetworkDefinitionCreationFlag": tensorrt.NetworkDefinitionCreationFlag, "DataType": tensorrt.DataType}
LEGACY = {"NetworkDefinitionCreationFlag": NetworkDefinitionCreationFlag, "DataType": DataType}


def select(monkeypatch, version: str) -> None:
    """Give the tensorrt double the enums of `version`'s generation (8.x: these; else 10.x's)."""
    chosen = LEGACY if int(version.split(".")[0]) < 10 else CURRENT
    for name, value in chosen.items():
        monkeypatch.setattr(tensorrt, name, value)
