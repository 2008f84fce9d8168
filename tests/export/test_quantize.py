"""int8 bundles: quantized from an fp32 bundle without torch, verified on load, captions kept."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("onnx")

from edge_caption import EdgeCaptioner, ExportError, evaluation  # noqa: E402
from edge_caption.bundle import Bundle  # noqa: E402
from edge_caption.captioner import default_bundle_path  # noqa: E402
from edge_caption.export import export  # noqa: E402


@pytest.fixture(scope="module")
def int8_bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("q") / "default-int8.ecap"
    messages = []
    export(default_bundle_path(), out, precision="int8", progress=messages.append)
    assert any("quantizing decoder_step.onnx" in m for m in messages)
    return out


def test_int8_bundle_is_declared_checked_and_smaller(int8_bundle):
    manifest = Bundle.open(int8_bundle).manifest    # opening verifies every checksum
    source = Bundle.open(default_bundle_path()).manifest
    assert manifest.precision == "int8" and source.precision == "fp32"
    assert (manifest.name, manifest.version, manifest.state) == (source.name, source.version, source.state)
    step = lambda b: (b / "decoder_step.onnx").stat().st_size  # noqa: E731
    assert step(int8_bundle) < 0.5 * step(default_bundle_path())

    import onnx

    ops = {node.op_type for node in onnx.load(str(int8_bundle / "decoder_step.onnx")).graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops
    assert "ConvInteger" not in {n.op_type for n in onnx.load(str(int8_bundle / "encoder.onnx")).graph.node}


def test_int8_keeps_the_captions(int8_bundle):
    items = list(evaluation.load("test", limit=48))
    frames = [np.asarray(image) for _, image, _ in items]
    with EdgeCaptioner(default_bundle_path(), backend="onnxruntime") as fp32, \
            EdgeCaptioner(int8_bundle, backend="onnxruntime") as int8:
        for beams in (1, 3):
            ours = [c.text for c in int8.caption_batch(frames, num_beams=beams)]
            theirs = [c.text for c in fp32.caption_batch(frames, num_beams=beams)]
            same = sum(a == b for a, b in zip(ours, theirs)) / len(frames)
            assert same >= 0.9, f"int8 agrees with fp32 on only {same:.0%} of {len(frames)} scenes (beam {beams})"
            correct = sum(text in refs for text, (_, _, refs) in zip(ours, items)) / len(frames)
            assert correct >= 0.75, f"int8 is exactly right on only {correct:.0%} of the scenes (beam {beams})"


def test_what_cannot_be_quantized_says_why(int8_bundle, tmp_path):
    with pytest.raises(ExportError, match="already int8"):
        export(int8_bundle, tmp_path / "again.ecap", precision="int8")
    with pytest.raises(ExportError, match="already a bundle.*--precision int8"):
        export(default_bundle_path(), tmp_path / "same.ecap")
    with pytest.raises(ExportError, match="fp32 and int8 bundles.*build"):
        export(default_bundle_path(), tmp_path / "half.ecap", precision="fp16")
    with pytest.raises(ExportError, match="already exists"):
        export(default_bundle_path(), int8_bundle, precision="int8")
    assert not any(tmp_path.iterdir())


def test_cli_quantizes_a_bundle(tmp_path):
    out = tmp_path / "q.ecap"
    done = subprocess.run([sys.executable, "-m", "edge_caption.cli", "export", "--model", str(default_bundle_path()),
                           "--out", str(out), "--precision", "int8"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "manifest.json").read_text())["precision"] == "int8"
    info = subprocess.run([sys.executable, "-m", "edge_caption.cli", "info", str(out)], capture_output=True, text=True)
    assert "precision int8" in info.stdout


def test_fp32_engines_stay_behind(tmp_path):
    import shutil
    from dataclasses import replace

    from edge_caption.export.writer import write_manifest
    from edge_caption.manifest import EngineSpec

    source = tmp_path / "with-engine.ecap"
    shutil.copytree(default_bundle_path(), source)
    (source / "engines").mkdir()
    (source / "engines" / "decoder_step.plan").write_bytes(b"built from the fp32 graph")
    engine = EngineSpec("decoder_step", "engines/decoder_step.plan", "8.7", "10.3.0", "fp32", "0" * 64)
    write_manifest(source, replace(Bundle.open(source).manifest, engines=(engine,)))

    out = export(source, tmp_path / "int8.ecap", precision="int8", progress=False)
    assert Bundle.open(out).manifest.engines == ()
    assert not (out / "engines").exists()


def _without(module: str, code: str) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter where `module` cannot be imported (as if not installed)."""
    blocker = f"import sys\nsys.modules[{module!r}] = None    # `import {module}` now raises ImportError\n"
    return subprocess.run([sys.executable, "-c", blocker + code], capture_output=True, text=True, timeout=300)


def test_quantizing_a_bundle_needs_no_torch(tmp_path):
    out = tmp_path / "q.ecap"
    done = _without("torch", f"""
from edge_caption.cli import main
assert main(["export", "--model", {str(default_bundle_path())!r}, "--out", {str(out)!r}, "--precision", "int8"]) == 0
assert not [m for m, v in sys.modules.items() if v is not None and m.split(".")[0] in ("torch", "transformers")]
""")
    assert done.returncode == 0, done.stderr
    assert Bundle.open(out).manifest.precision == "int8"


def test_quantizing_without_onnx_names_the_quantize_extra(tmp_path):
    done = _without("onnx", f"""
from edge_caption.cli import main
sys.exit(main(["export", "--model", {str(default_bundle_path())!r}, "--out", {str(tmp_path / "q.ecap")!r},
               "--precision", "int8"]))
""")
    assert done.returncode == 2, done.stderr
    assert "pip install 'edge-caption[quantize]'" in done.stderr and "[export]" not in done.stderr
    assert not (tmp_path / "q.ecap").exists()
