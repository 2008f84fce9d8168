"""`edge-caption build` against the TensorRT builder double: what the network, profiles, timing cache
and manifest get; int8 from calibrated Q/DQ graphs; no torch anywhere on the way."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from edge_caption.bundle import Bundle, sha256_file
from edge_caption.captioner import default_bundle_path
from edge_caption.cli import main
from edge_caption.errors import BackendUnavailableError, ExportError
from edge_caption.export.tensorrt import BuildConfig, build_engines
from edge_caption.evaluation.scenes import write_split

from ..trt_double import install, tensorrt as trt_double

ROOT = Path(__file__).resolve().parents[2]


def record(plan: Path) -> dict:
    header = plan.read_bytes()[len(trt_double.MAGIC):].partition(b"\n")[0]
    return json.loads(header)


def test_build_records_engines_profiles_and_cache(monkeypatch, tmp_path):
    trt, _ = install(monkeypatch)
    cache = tmp_path / "timing.cache"
    seen = []
    real = trt.IBuilderConfig.create_timing_cache
    monkeypatch.setattr(trt.IBuilderConfig, "create_timing_cache", lambda self, blob: seen.append(len(blob)) or real(self, blob))
    config = BuildConfig(batch_sizes=(1, 4), num_beams=3, max_new_tokens=12, timing_cache=cache)
    out = build_engines(default_bundle_path(), config, out=tmp_path / "a.ecap", progress=False)
    bundle = Bundle.open(out)
    engines = {e.graph: e for e in bundle.manifest.engines}
    assert set(engines) == {"encoder", "decoder_step"}
    for spec in engines.values():
        assert (spec.compute_capability, spec.tensorrt_version, spec.precision) == ("8.7", "10.3.0", "fp32")
        assert spec.sha256 == sha256_file(out / spec.file) == bundle.manifest.files[spec.file]
    step = record(out / engines["decoder_step"].file)
    assert step["strongly_typed"]
    # one profile per batch size; rows = images x beams; the memory tensors are one row per image
    assert [p["input_ids"] for p in step["profiles"]] == [[[1, 1], [3, 1], [3, 1]], [[1, 1], [12, 1], [12, 1]]]
    (h, w), grid = bundle.manifest.preprocess.size, bundle.manifest.attention_grid
    assert [p["features"][2] for p in step["profiles"]] == [[1, grid[0] * grid[1], 128], [4, grid[0] * grid[1], 128]]
    assert [p["pixel_values"] for p in record(out / engines["encoder"].file)["profiles"]] == \
        [[[1, 3, h, w]] * 3, [[1, 3, h, w], [4, 3, h, w], [4, 3, h, w]]]
    assert seen[0] == 0 and seen[1] > 0        # the step engine's build starts from the encoder's cache
    assert len(json.loads(cache.read_bytes())["entries"]) == 2
    # a rebuild in place replaces the engines of the same GPU / TensorRT / precision, reusing the cache
    build_engines(out, config, progress=False)
    assert seen[2] == cache.stat().st_size > 0
    assert len(Bundle.open(out).manifest.engines) == 2
    install(monkeypatch, version="11.4.0", devices=[(12, 0)])
    build_engines(out, BuildConfig(batch_sizes=(2,), timing_cache=tmp_path / "11.cache"), progress=False)
    assert sorted((e.compute_capability, e.graph) for e in Bundle.open(out).manifest.engines) == \
        [("12.0", "decoder_step"), ("12.0", "encoder"), ("8.7", "decoder_step"), ("8.7", "encoder")]


def test_int8_engines_come_from_calibrated_qdq_graphs(monkeypatch, tmp_path):
    install(monkeypatch)
    images = write_split(tmp_path / "calib", "val", count=16)
    with pytest.raises(ExportError, match="--calibration"):
        build_engines(default_bundle_path(), BuildConfig(precision="int8"), out=tmp_path / "x.ecap", progress=False)
    out = build_engines(default_bundle_path(), BuildConfig(precision="int8", batch_sizes=(2,), calibration=images,
                                                           timing_cache=tmp_path / "c"), out=tmp_path / "q.ecap",
                        progress=False)
    for spec in Bundle.open(out).manifest.engines:
        assert spec.precision == "int8"
        onnx_bytes = (out / spec.file).read_bytes().split(b"\n", 2)[2]
        ops = {node.op_type for node in onnx.load_from_string(onnx_bytes).graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_int8_graphs_dequantize_int8_only(tmp_path):
    """TensorRT's dequantize layer takes INT8 / FP8 / INT4: a quantized bias (an INT32 DequantizeLinear)
    would stop every int8 build, so biases stay float and every DequantizeLinear reads INT8."""
    from edge_caption.export.calibration import qdq_graphs

    images = write_split(tmp_path / "calib", "val", count=2)
    made = qdq_graphs(Bundle.open(default_bundle_path()), images, tmp_path / "q", progress=False)
    for key, path in made.items():
        model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
        types = {v.name: v.type.tensor_type.elem_type for v in (*model.graph.value_info, *model.graph.input)}
        types.update({i.name: i.data_type for i in model.graph.initializer})
        dequantized = [types[n.input[0]] for n in model.graph.node if n.op_type == "DequantizeLinear"]
        assert dequantized and set(dequantized) == {onnx.TensorProto.INT8}, key
        biases = [n.input[2] for n in model.graph.node if n.op_type in ("Conv", "Gemm") and len(n.input) > 2]
        assert biases and all(types[b] == onnx.TensorProto.FLOAT for b in biases), key


def test_static_step_engine_profiles_and_int8(exported, monkeypatch, tmp_path):
    """A bundle with the TensorRT-shaped step gets that step's engine: the cache length fixed to the
    longest caption, rows in and out from one image up; int8 calibrates it like the other graphs."""
    _, bundle = exported("vit_gpt2", 0, ("onnx", "tensorrt"))
    install(monkeypatch)
    config = BuildConfig(batch_sizes=(1, 2), num_beams=3, max_new_tokens=6, timing_cache=tmp_path / "c")
    out = build_engines(bundle, config, out=tmp_path / "s.ecap", progress=False)
    engines = {e.graph: e for e in Bundle.open(out).manifest.engines}
    assert set(engines) == {"encoder", "static_step"}
    profiles = record(out / engines["static_step"].file)["profiles"]
    # C = prompt (1) + 6 new tokens - 1: the last token is never fed back
    assert [p["past_key_0"] for p in profiles] == [[[1, 2, 6, 16], [3, 2, 6, 16], [3, 2, 6, 16]],
                                                   [[1, 2, 6, 16], [6, 2, 6, 16], [6, 2, 6, 16]]]
    assert [p["beam_index"] for p in profiles] == [[[1], [3], [3]], [[1], [6], [6]]]
    assert all(p["position"] == [[1]] * 3 for p in profiles)
    images = write_split(tmp_path / "calib", "val", count=8)
    q = build_engines(bundle, BuildConfig(precision="int8", batch_sizes=(2,), calibration=images,
                                          timing_cache=tmp_path / "c"), out=tmp_path / "q.ecap", progress=False)
    for spec in Bundle.open(q).manifest.engines:
        ops = {node.op_type for node in onnx.load_from_string((q / spec.file).read_bytes().split(b"\n", 2)[2]).graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops, spec.graph


def test_fp16_graphs_keep_fp32_io(monkeypatch, tmp_path):
    pytest.importorskip("onnxconverter_common")
    install(monkeypatch)
    out = build_engines(default_bundle_path(), BuildConfig(precision="fp16", batch_sizes=(1,), timing_cache=tmp_path / "c"),
                        out=tmp_path / "h.ecap", progress=False)
    spec = Bundle.open(out).manifest.engines[0]
    model = onnx.load_from_string((out / spec.file).read_bytes().split(b"\n", 2)[2])
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for i in model.graph.input)


def test_fp16_static_step_scores_candidates_in_fp32(exported, tmp_path):
    """The weights go fp16; the log-softmax, the beam-score sum and the top-k stay fp32, as in generate()."""
    pytest.importorskip("onnxconverter_common")
    from edge_caption.export.tensorrt import scoring_nodes, to_fp16

    _, bundle = exported("vit_gpt2", 0, ("onnx", "tensorrt"))
    source = bundle / Bundle.open(bundle).manifest.static_step.file
    names = set(scoring_nodes(onnx.load(str(source))))
    model = onnx.shape_inference.infer_shapes(onnx.load(str(to_fp16(source, tmp_path / "h.onnx"))))
    types = {v.name: v.type.tensor_type.elem_type for v in (*model.graph.value_info, *model.graph.input)}
    scoring = [n for n in model.graph.node if n.name in names]
    assert sorted(n.op_type for n in scoring) == ["Add", "LogSoftmax", "TopK"]
    floats = [types[i] for n in scoring for i in n.input if types.get(i) in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)]
    assert floats and all(t == onnx.TensorProto.FLOAT for t in floats)
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)


def test_tensorrt_8_6_is_refused_up_front(monkeypatch, tmp_path):
    """JetPack 6.0's TensorRT 8.6 has no STRONGLY_TYPED flag (nor INT64 I/O): say which JetPack is
    needed rather than die on an AttributeError half-way."""
    install(monkeypatch, version="8.6.2")
    with pytest.raises(BackendUnavailableError, match=r"TensorRT 8\.6\.2 is too old.*JetPack 6\.1 or newer \(TensorRT 10\.3\)"):
        build_engines(default_bundle_path(), BuildConfig(batch_sizes=(1,), timing_cache=tmp_path / "c"),
                      out=tmp_path / "old.ecap", progress=False)
    assert not (tmp_path / "old.ecap").exists()


def test_fp16_engines_keep_caches_and_memory_fp16(exported, monkeypatch, tmp_path):
    """Only what the host gives or reads stays fp32 (the image, the beam scores, the scores and logits);
    the static step's caches and the image memory stay fp16 from engine to engine, so a step moves
    half the cache bytes and casts nothing. The backend binds by the engine's dtypes and captions."""
    pytest.importorskip("onnxconverter_common")
    from edge_caption import EdgeCaptioner

    _, bundle = exported("vit_gpt2", 0, ("onnx", "tensorrt"))
    install(monkeypatch)
    out = build_engines(bundle, BuildConfig(precision="fp16", batch_sizes=(2,), num_beams=2, max_new_tokens=6,
                                            timing_cache=tmp_path / "c"), out=tmp_path / "h.ecap", progress=False)
    m = Bundle.open(out).manifest
    on_device = {*m.memory, *(s.input for s in m.state), *(s.output for s in m.state)}
    for spec in m.engines:
        model = onnx.load_from_string((out / spec.file).read_bytes().split(b"\n", 2)[2])
        io = {v.name: v.type.tensor_type.elem_type for v in (*model.graph.input, *model.graph.output)}
        floats = {name: t for name, t in io.items() if t in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)}
        half = {name for name, t in floats.items() if t == onnx.TensorProto.FLOAT16}
        assert half == on_device & set(io) and half, spec.graph
        kept = set(floats) - half
        assert kept == ({"pixel_values"} if spec.graph == "encoder" else {"beam_scores", "topk_scores", "logits"})
        casts = [n.name for n in model.graph.node if n.op_type == "Cast" and {*n.input, *n.output} & half]
        assert not casts, f"{spec.graph}: {casts} cast a cache or memory tensor"
    pixels = np.random.default_rng(5).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with EdgeCaptioner(out, backend="tensorrt") as cap:
        assert cap._backend.static_step
        pixels = pixels[:, :, :cap.manifest.preprocess.size[0], :cap.manifest.preprocess.size[1]]
        assert len(cap.caption_pixels(pixels, num_beams=2, max_new_tokens=6)) == 2


def test_fp8_needs_ada_or_newer(monkeypatch, tmp_path):
    install(monkeypatch, devices=[(8, 7)])
    with pytest.raises(ExportError, match="8.9 or newer"):
        build_engines(default_bundle_path(), BuildConfig(precision="fp8"), out=tmp_path / "f.ecap", progress=False)


def test_cli_build_and_info(monkeypatch, tmp_path, capsys):
    install(monkeypatch)
    out = tmp_path / "cli.ecap"
    assert main(["build", "--batch", "1,2", "--out", str(out), "--timing-cache", str(tmp_path / "c"), "--quiet"]) == 0
    assert main(["info", str(out), "--check"]) == 0
    text = capsys.readouterr().out
    assert "tensorrt: yes" in text and "check      tensorrt: '" in text
    assert main(["build", str(out), "--batch", "8,1"]) == 2
    assert "increasing positive batch sizes" in capsys.readouterr().err


def test_build_never_imports_torch(tmp_path):
    script = f"""
import sys, types
sys.modules["torch"] = None          # any import of torch now fails
sys.path.insert(0, {str(ROOT)!r})
from tests.trt_double import cudart, tensorrt
cuda, bindings = types.ModuleType("cuda"), types.ModuleType("cuda.bindings")
cuda.bindings, bindings.runtime = bindings, cudart
sys.modules.update({{"tensorrt": tensorrt, "cuda": cuda, "cuda.bindings": bindings, "cuda.bindings.runtime": cudart}})
from edge_caption.cli import main
sys.exit(main(["build", "--batch", "1", "--out", {str(tmp_path / "n.ecap")!r}, "--timing-cache", {str(tmp_path / "c")!r}, "--quiet"]))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_a_timing_cache_from_another_tensorrt_is_timed_afresh(monkeypatch, tmp_path):
    """set_timing_cache answers False for a cache another TensorRT wrote: the build starts a new one
    instead of going on without any (the bool was ignored, and the cache never saved)."""
    install(monkeypatch, version="10.3.0")
    cache = tmp_path / "shared.cache"
    build_engines(default_bundle_path(), BuildConfig(batch_sizes=(1,), timing_cache=cache), out=tmp_path / "a.ecap",
                  progress=False)
    assert json.loads(cache.read_bytes())["tensorrt"] == "10.3.0"
    install(monkeypatch, version="10.13.0")
    build_engines(default_bundle_path(), BuildConfig(batch_sizes=(1,), timing_cache=cache), out=tmp_path / "b.ecap",
                  progress=False)
    assert json.loads(cache.read_bytes())["tensorrt"] == "10.13.0"
