"""int8 as TensorRT wants it: static Q/DQ nodes in the ONNX graphs, calibrated on ONNX Runtime.

TensorRT 11 has no int8 flag or calibrator: int8 comes from QuantizeLinear/DequantizeLinear pairs
in the graph (10.x reads them too). ONNX Runtime's `quantize_static(..., quant_format=QDQ)` writes
them from calibration data, on a CPU, so this runs at export on a desktop or in `build` on the
device. Calibration data are real inputs: the frames of a folder or a video, preprocessed as the
bundle says, and for the decoder step the very inputs it sees while captioning those frames
(recorded from the fp32 graphs on ONNX Runtime). Scales are symmetric (zero point 0), as TensorRT
requires, and only Conv / MatMul / Gemm inputs are quantized: TensorRT fuses the rest around them.
Biases stay float, so every DequantizeLinear reads INT8, the only integer type TensorRT dequantizes.
"""
from __future__ import annotations

import logging
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge_caption.bundle import Bundle
from edge_caption.errors import ExportError
from edge_caption.manifest import MANIFEST_FILE

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
QDQ = "int8-qdq"        # the manifest precision of a bundle whose graphs carry Q/DQ nodes


def calibration_frames(source: str | Path, *, limit: int = 256, progress: bool = True) -> list[np.ndarray]:
    """Up to `limit` RGB uint8 frames: every image of a folder (sorted), or frames spread over a video."""
    import cv2

    from edge_caption.progress import Progress

    path = Path(source)
    frames: list[np.ndarray] = []
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
        bar = Progress(len(files), "calibration frames", enabled=progress)
        for file in files:
            image = cv2.imread(str(file), cv2.IMREAD_COLOR)
            if image is not None:
                frames.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
            bar.advance()
        bar.close()
    elif path.is_file():
        video = cv2.VideoCapture(str(path))
        total = int(video.get(cv2.CAP_PROP_FRAME_COUNT)) or limit
        every = max(1, total // limit)
        bar = Progress(min(limit, total), "calibration frames", enabled=progress)
        index = 0
        while len(frames) < limit:
            ok, frame = video.read()
            if not ok:
                break
            if index % every == 0:
                frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
                bar.advance()
            index += 1
        video.release()
        bar.close()
    else:
        raise FileNotFoundError(f"no calibration data at {path}: pass a folder of images or a video file")
    if not frames:
        raise ExportError(f"{path} holds no readable images or frames; calibration needs some (a few hundred "
                          "like the ones the camera will see)")
    return frames


class _Recorder:
    """A step backend that records every decoder-step input it is asked to run."""

    def __init__(self, backend: Any, manifest: Any, feeds: list[dict[str, np.ndarray]]):
        self.backend, self.feeds = backend, feeds
        self.memory = [n for n in manifest.memory if n in manifest.decoder_step.inputs]

    def step(self, input_ids, memory, state):
        self.feeds.append({"input_ids": input_ids, **{n: memory[n] for n in self.memory}, **state})
        return self.backend.step(input_ids, memory, state)


def record_inputs(bundle: Bundle, frames: list[np.ndarray], *, batch_size: int = 16, max_steps: int = 512,
                  progress: bool = True) -> tuple[list[dict], list[dict]]:
    """(encoder feeds, decoder-step feeds) seen while captioning `frames` with the fp32 graphs."""
    from edge_caption.backends.onnxruntime import OnnxRuntimeBackend
    from edge_caption.decoding import decode
    from edge_caption.options import DecodeOptions
    from edge_caption.preprocess import preprocess
    from edge_caption.progress import Progress

    manifest = bundle.manifest
    backend = OnnxRuntimeBackend(bundle, device=None)
    options = DecodeOptions.from_mapping(manifest.decoding)
    encoder_feeds: list[dict] = []
    step_feeds: list[dict] = []
    bar = Progress(len(frames), "calibration captions", enabled=progress)
    for start in range(0, len(frames), batch_size):
        pixels = preprocess(frames[start:start + batch_size], manifest.preprocess)
        encoder_feeds.append({"pixel_values": pixels})
        decode(_Recorder(backend, manifest, step_feeds), manifest, backend.encode(pixels), options)
        bar.advance(len(pixels))
    bar.close()
    backend.close()
    if len(step_feeds) > max_steps:    # an even spread over captions and positions, the same every run
        keep = np.linspace(0, len(step_feeds) - 1, max_steps).round().astype(int)
        step_feeds = [step_feeds[i] for i in keep]
    return encoder_feeds, step_feeds


def quantize_qdq(source: Path, output: Path, feeds: list[dict[str, np.ndarray]], *, per_channel: bool = True) -> Path:
    """Write `source` with symmetric int8 Q/DQ on Conv / MatMul / Gemm, calibrated (min/max) on `feeds`."""
    try:
        from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                              quantize_static)
    except ImportError as exc:  # pragma: no cover - onnx is in the export and tensorrt extras
        raise ExportError(f"int8 calibration needs onnx ({exc.name} is missing): pip install 'edge-caption[tensorrt]'") from exc

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(feeds)

        def get_next(self):
            return next(self.items, None)

    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)
    try:
        quantize_static(str(source), str(output), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=per_channel,
                        op_types_to_quantize=["Conv", "MatMul", "Gemm"], calibrate_method=CalibrationMethod.MinMax,
                        # biases stay float: a quantized bias is an INT32 DequantizeLinear, and TensorRT
                        # dequantizes INT8 / FP8 / INT4 only (onnx-tensorrt docs/operators.md)
                        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False})
    finally:
        logging.getLogger().setLevel(quiet)
    return output


def qdq_graphs(bundle: Bundle, calibration: str | Path, out_dir: Path, *, limit: int = 256,
               progress: bool | Callable[[str], None] = True) -> dict[str, Path]:
    """Q/DQ copies of the bundle's encoder and step graphs in `out_dir`, calibrated on `calibration`."""
    say = progress if callable(progress) else (lambda message: None)
    bars = bool(progress)
    frames = calibration_frames(calibration, limit=limit, progress=bars)
    say(f"recording calibration inputs from {len(frames)} frames")
    encoder_feeds, step_feeds = record_inputs(bundle, frames, progress=bars)
    m = bundle.manifest
    out_dir.mkdir(parents=True, exist_ok=True)
    feeds = {"encoder": encoder_feeds, "decoder_step": step_feeds}
    if m.static_step is not None:
        feeds["static_step"] = static_feeds(m, step_feeds)
    made = {}
    for key, graph in m.graphs().items():
        say(f"calibrating {graph.file} on {len(feeds[key])} inputs")
        made[key] = quantize_qdq(bundle.file(graph.file), out_dir / Path(graph.file).name, feeds[key])
    return made


def static_feeds(manifest: Any, step_feeds: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """The TensorRT-shaped step's inputs for the recorded one-token steps: the same activations, each
    cache one position longer than what it holds (the slot the step writes)."""
    found = []
    for feed in step_feeds:
        ids = feed["input_ids"]
        if ids.shape[1] != 1:
            continue                        # a multi-token prompt step: the static step takes them one by one
        rows = len(ids)
        cached = feed[manifest.state[0].input].shape[manifest.state[0].grow_axis]
        static = {"input_ids": ids, "position": np.array([cached], np.int64),
                  "beam_index": np.arange(rows, dtype=np.int64), "beam_scores": np.zeros(rows, np.float32)}
        for name in manifest.static_step.inputs:
            if name not in static:
                static[name] = feed[name]
        for spec in manifest.state:
            pad = [(0, 0)] * feed[spec.input].ndim
            pad[spec.grow_axis] = (0, 1)
            static[spec.input] = np.pad(feed[spec.input], pad)
        found.append(static)
    return found


def qdq_bundle(source: str | Path, output: str | Path, calibration: str | Path, *, limit: int = 256,
               overwrite: bool = False, progress: bool | Callable[[str], None] = True) -> Path:
    """An ONNX Runtime-runnable copy of the fp32 bundle `source` whose graphs carry int8 Q/DQ nodes
    (manifest precision "int8-qdq"): check its accuracy here, then `edge-caption build --precision int8` it."""
    from edge_caption.progress import reporter
    from .writer import staging, write_manifest

    bundle = Bundle.open(source)
    if bundle.manifest.precision != "fp32":
        raise ExportError(f"{bundle.path} is {bundle.manifest.precision}; calibrate the fp32 bundle it came from")
    say = reporter(progress, "calibrate")
    with staging(Path(output), overwrite, sources=(bundle.path,)) as scratch:
        programs = bundle.manifest.torch_programs
        # the torch programs are fp32 / fp16 for torch-cuda: they have no place in an int8 bundle
        fp32_only = {*programs.encoder.values(), *programs.static_step.values()} if programs else set()
        for name in bundle.manifest.files:
            if name != MANIFEST_FILE and not name.startswith("engines/") and name not in fp32_only:
                (scratch / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(bundle.file(name), scratch / name)
        made = qdq_graphs(bundle, calibration, scratch / ".qdq", limit=limit, progress=say if progress else False)
        graphs = bundle.manifest.graphs()
        for key, path in made.items():
            path.replace(scratch / graphs[key].file)
        shutil.rmtree(scratch / ".qdq")
        write_manifest(scratch, replace(bundle.manifest, precision=QDQ, engines=(), torch_programs=None))
    say(f"bundle written to {output}")
    return Path(output)
