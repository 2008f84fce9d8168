"""A small client for the caption server, on tritonclient's HTTP API; safe to share between threads."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import FrameError, OptionError, ServeError, missing_extra
from ..types import Caption

# The server prefixes each error with the class it raised; the client raises the same class.
_ERRORS = {"FrameError": FrameError, "OptionError": OptionError}


def encode(image: Any, color: str = "bgr") -> bytes:
    """What one `image` row carries: a file's bytes as they are, a frame as a PNG (lossless, so the
    server sees exactly the pixels the caller had)."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        if len(image) == 0:
            raise FrameError("got empty bytes; pass the contents of a JPEG or PNG file")
        return bytes(image)
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"image file not found: {str(path)!r}; check the path")
        return path.read_bytes()
    import cv2

    from ..preprocess import to_rgb_uint8

    bgr = cv2.cvtColor(to_rgb_uint8(image, color=color), cv2.COLOR_RGB2BGR)
    ok, png = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:  # pragma: no cover - OpenCV always encodes uint8 [H,W,3]
        raise FrameError(f"could not encode a frame of shape {bgr.shape} as PNG")
    return png.tobytes()


class Client:
    """Caption images with a running `edge-caption serve` (or any Triton serving our model).

    `url`: "host:port" of Triton's HTTP endpoint (an "http://" prefix is accepted)."""

    def __init__(self, url: str = "127.0.0.1:8000", *, model_name: str = "edge_caption", timeout: float = 60.0):
        try:
            import tritonclient.http  # noqa: F401
        except ImportError:
            raise missing_extra("tritonclient", "serve") from None
        self.url = url.split("://", 1)[-1].rstrip("/")
        self.model_name, self.timeout = model_name, timeout
        self._local = threading.local()
        self._made: list[Any] = []
        self._lock = threading.Lock()

    def _http(self):
        # tritonclient's HTTP client is not meant to be shared between threads: one per thread.
        client = getattr(self._local, "client", None)
        if client is None:
            import tritonclient.http as http

            client = http.InferenceServerClient(self.url, connection_timeout=self.timeout,
                                                network_timeout=self.timeout)
            self._local.client = client
            with self._lock:
                self._made.append(client)
        return client

    def ready(self) -> bool:
        """Whether the server is up and the model loaded."""
        try:
            return bool(self._http().is_model_ready(self.model_name))
        except Exception:  # noqa: BLE001 - not reachable is "not ready"
            return False

    def caption(self, image: Any, *, color: str = "bgr", num_beams: int | None = None,
                max_new_tokens: int | None = None) -> Caption:
        """Caption one image: a file path, a JPEG/PNG file's bytes, or a frame (BGR uint8, as for
        `EdgeCaptioner.caption`). `timings["total"]` is the round trip in ms."""
        return self.caption_batch([image], color=color, num_beams=num_beams, max_new_tokens=max_new_tokens)[0]

    def caption_batch(self, images: Sequence[Any], *, color: str = "bgr", num_beams: int | None = None,
                      max_new_tokens: int | None = None) -> list[Caption]:
        """Caption several images in one request (one batch row each)."""
        import tritonclient.http as http
        from tritonclient.utils import InferenceServerException

        rows = [np.frombuffer(encode(image, color), dtype=np.uint8) for image in images]
        if not rows:
            raise FrameError("caption_batch() got no images; pass a non-empty list")
        width = max(len(r) for r in rows)
        if any(len(r) != width for r in rows):
            # One tensor per request, so rows share a length; trailing zeros after the end of a
            # JPEG/PNG file are ignored by decoders.
            rows = [np.pad(r, (0, width - len(r))) for r in rows]
        image = http.InferInput("image", [len(rows), width], "UINT8")
        image.set_data_from_numpy(np.stack(rows))
        inputs = [image]
        for name, value in (("num_beams", num_beams), ("max_new_tokens", max_new_tokens)):
            if value is not None:
                tensor = http.InferInput(name, [len(rows), 1], "INT32")
                tensor.set_data_from_numpy(np.full((len(rows), 1), value, dtype=np.int32))
                inputs.append(tensor)
        start = time.perf_counter()
        try:
            result = self._http().infer(self.model_name, inputs)
        except InferenceServerException as exc:
            raise _error(exc.message() or str(exc)) from None
        total = (time.perf_counter() - start) * 1e3
        texts, scores, ids = result.as_numpy("text"), result.as_numpy("score"), result.as_numpy("token_ids")
        return [Caption(texts[i, 0].decode("utf-8"), tuple(int(t) for t in ids[i] if t >= 0), float(scores[i, 0]),
                        {"total": total}) for i in range(len(rows))]

    def close(self) -> None:
        with self._lock:
            made, self._made = self._made, []
        for client in made:
            client.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _error(message: str) -> Exception:
    name, _, rest = message.partition(": ")
    return _ERRORS[name](rest) if name in _ERRORS else ServeError(f"the caption server answered: {message}")
