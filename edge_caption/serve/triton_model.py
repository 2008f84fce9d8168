"""The Triton Python-backend model: encoded images in, captions out, one EdgeCaptioner per instance.

Triton loads this through the two-line `model.py` that `write_repository` puts in the model
directory; it runs inside Triton's Python-backend stub process, where `triton_python_backend_utils`
exists. Every request is checked on its own and a bad one gets its own error response, so the
requests Triton batched with it are still captioned (a Python-backend model may answer each
request separately; raising would fail the whole batch).

The interface (a promise to clients outside this repository):
  inputs   image           UINT8 [-1]  one encoded JPEG/PNG per batch row
           num_beams       INT32 [1]   optional
           max_new_tokens  INT32 [1]   optional
  outputs  text            BYTES [1]
           score           FP32  [1]
           token_ids       INT32 [-1]  padded with -1
"""
from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from ..errors import EdgeCaptionError, FrameError, OptionError

# Upper bounds that keep one request from holding an instance for minutes.
LIMITS = {"num_beams": 16, "max_new_tokens": 256}
OPTION_INPUTS = tuple(LIMITS)


def decode_image(encoded: np.ndarray) -> np.ndarray:
    """One row of the `image` input (the bytes of a JPEG/PNG file) -> a BGR frame."""
    import cv2

    if encoded.size == 0:
        raise FrameError("image is empty: send the bytes of a JPEG or PNG file, one file per batch row")
    frame = cv2.imdecode(np.ascontiguousarray(encoded, dtype=np.uint8), cv2.IMREAD_COLOR)
    if frame is None:
        raise FrameError(f"image ({encoded.size} bytes) is not a JPEG or PNG file OpenCV can decode; "
                         "send the file's bytes, not raw pixels")
    return frame


def row_options(values: dict[str, np.ndarray | None], row: int) -> dict[str, int]:
    """The decoding options one batch row asked for, checked against the server's limits."""
    options = {}
    for name, array in values.items():
        if array is None:
            continue
        value = int(np.asarray(array).reshape(array.shape[0], -1)[row, 0])
        if not 1 <= value <= LIMITS[name]:
            raise OptionError(f"{name} must be between 1 and {LIMITS[name]} on this server, got {value}")
        options[name] = value
    return options


def request_rows(images: np.ndarray, options: dict[str, np.ndarray | None]) -> list[tuple[np.ndarray, dict[str, int]]]:
    """(frame, options) for every row of one request; raises for the first bad row, naming it."""
    if images.ndim != 2:
        raise FrameError(f"image must have shape [batch, bytes], got {list(images.shape)}")
    rows = []
    for row in range(images.shape[0]):
        try:
            rows.append((decode_image(images[row]), row_options(options, row)))
        except EdgeCaptionError as exc:
            raise type(exc)(f"row {row}: {exc}" if images.shape[0] > 1 else str(exc)) from None
    return rows


def caption_rows(captioner: Any, rows: list[tuple[np.ndarray, dict[str, int]]]) -> list[Any]:
    """Caption rows from any number of requests: one caption_batch per distinct set of options."""
    results: list[Any] = [None] * len(rows)
    groups: dict[tuple, list[int]] = {}
    for i, (_, options) in enumerate(rows):
        groups.setdefault(tuple(sorted(options.items())), []).append(i)
    for key, indices in groups.items():
        captions = captioner.caption_batch([rows[i][0] for i in indices], **dict(key))
        for i, caption in zip(indices, captions):
            results[i] = caption
    return results


def outputs(captions: list[Any]) -> dict[str, np.ndarray]:
    longest = max(len(c.token_ids) for c in captions)
    token_ids = np.full((len(captions), longest), -1, dtype=np.int32)
    for i, caption in enumerate(captions):
        token_ids[i, :len(caption.token_ids)] = caption.token_ids
    return {
        "text": np.array([[c.text.encode("utf-8")] for c in captions], dtype=np.object_),
        "score": np.array([[c.score] for c in captions], dtype=np.float32),
        "token_ids": token_ids,
    }


class TritonPythonModel:
    """What Triton's Python backend calls: initialize once per instance, execute per batch."""

    def initialize(self, args: dict[str, str]) -> None:
        from ..captioner import EdgeCaptioner

        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        bundle = params.get("bundle") or None
        if bundle and not bundle.startswith("/"):
            bundle = f"{args['model_repository']}/{args['model_version']}/{bundle}"
        # Instances share the machine's cores: each gets its share rather than a thread per core.
        instances = sum(int(group.get("count", 1)) for group in config.get("instance_group", [])) or 1
        threads = max(1, len(os.sched_getaffinity(0)) // instances) if instances > 1 else None
        self.captioner = EdgeCaptioner(bundle, backend=params.get("backend", "auto"), threads=threads)

    def execute(self, requests: list[Any]) -> list[Any]:
        import triton_python_backend_utils as pb

        parsed: list[Any] = []          # per request: its rows, or the error it gets
        for request in requests:
            try:
                images = pb.get_input_tensor_by_name(request, "image").as_numpy()
                options = {}
                for name in OPTION_INPUTS:
                    tensor = pb.get_input_tensor_by_name(request, name)
                    options[name] = None if tensor is None else tensor.as_numpy()
                parsed.append(request_rows(images, options))
            except EdgeCaptionError as exc:
                parsed.append(exc)
        rows = [row for item in parsed if isinstance(item, list) for row in item]
        try:
            captions = caption_rows(self.captioner, rows) if rows else []
        except Exception as exc:  # noqa: BLE001 - reported to every request of this batch, server keeps running
            return [pb.InferenceResponse(error=pb.TritonError(f"{type(exc).__name__}: {exc}")) for _ in requests]
        responses, start = [], 0
        for item in parsed:
            if isinstance(item, Exception):
                responses.append(pb.InferenceResponse(error=pb.TritonError(f"{type(item).__name__}: {item}")))
                continue
            mine = captions[start:start + len(item)]
            start += len(item)
            responses.append(pb.InferenceResponse([pb.Tensor(k, v) for k, v in outputs(mine).items()]))
        return responses

    def finalize(self) -> None:
        self.captioner.close()
