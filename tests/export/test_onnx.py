"""ONNX export: each family exports once (module fixture), passes onnx.checker, and runs in
onnxruntime with the same numbers as the torch modules and the original model, from T = 0."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
import numpy as np  # noqa: E402

from edge_caption.errors import ExportError  # noqa: E402
from edge_caption.export.adapters import split_model  # noqa: E402
from edge_caption.export.onnx import export_onnx, validate  # noqa: E402

from edge_caption.export import testing as models  # noqa: E402

FAMILIES = ["vit_gpt2", "swin_gpt2", "deit_bert", "blip"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx")
    cache = {}

    def get(family):
        if family not in cache:
            split = split_model(getattr(models, f"tiny_{family}")(0))
            messages = []
            graphs = export_onnx(split, root / family, progress=messages.append)
            cache[family] = (split, root / family, graphs, messages)
        return cache[family]

    return get


@pytest.mark.parametrize("family", FAMILIES)
def test_export_and_validate(exported, family):
    split, out, graphs, messages = exported(family)
    assert messages, "export reports progress"
    enc, step = graphs["encoder"], graphs["decoder_step"]
    assert enc.inputs == ("pixel_values",) and enc.outputs == tuple(split.memory_names)
    assert step.inputs == ("input_ids", *split.memory_names, *split.past_names)
    assert step.outputs == ("logits", *split.present_names)
    for g in (enc, step):
        assert g.files == (g.file,), "tiny models keep their weights inside the .onnx"
        assert (out / g.file).is_file()
    diffs = validate(split, out)
    assert set(diffs) == {"memory_vs_torch", "logits_vs_torch", "present_vs_torch", "logits_vs_recompute"}
    assert max(diffs.values()) < 1e-4


def test_dynamic_axes_are_symbolic(exported):
    import onnx

    split, out, graphs, _ = exported("vit_gpt2")
    model = onnx.load(str(out / graphs["decoder_step"].file))
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in [*model.graph.input, *model.graph.output]}
    assert dims["input_ids"] == ["N", "L"]
    assert dims["cross_key_0"][0] == "B" and dims["cross_key_0"][2] == "S"
    assert dims["past_key_0"][0] == "N" and dims["past_key_0"][2] == "T"
    assert dims["logits"] == ["N", split.vocab_size]


@pytest.mark.parametrize("family", ["vit_gpt2", "blip"])
def test_first_step_with_empty_cache(exported, family):
    """T = 0 in onnxruntime, one image with 3 beams and one with a single-token prompt (L = 1, N = B = 1
    were example sizes >= 2 at export, so this also checks nothing got specialised)."""
    split, out, graphs, _ = exported(family)
    enc = ort.InferenceSession(str(out / graphs["encoder"].file), providers=["CPUExecutionProvider"])
    step = ort.InferenceSession(str(out / graphs["decoder_step"].file), providers=["CPUExecutionProvider"])
    for b, beams in [(1, 3), (1, 1), (3, 1)]:
        pixels = models.pixel_values(b, seed=3)
        memory = enc.run(None, {"pixel_values": pixels.numpy()})
        n = b * beams
        ids = np.array([split.prompt_ids[-1:]] * n, dtype=np.int64)
        past = {s.input: np.zeros((n, s.shape[1], 0, s.shape[3]), np.float32) for s in split.state}
        logits, *present = step.run(None, {"input_ids": ids, **dict(zip(split.memory_names, memory)), **past})
        assert logits.shape == (n, split.vocab_size)
        assert all(p.shape[0] == n and p.shape[2] == 1 for p in present)
        with torch.no_grad():
            ref = split.step(torch.from_numpy(ids), *map(torch.from_numpy, memory),
                             *[torch.from_numpy(past[s.input]) for s in split.state])[0]
        np.testing.assert_allclose(logits, ref.numpy(), atol=1e-4, rtol=1e-3)


def test_validate_reports_disagreement(exported):
    split, out, _, _ = exported("deit_bert")
    bias = split.hf_model.decoder.cls.predictions.decoder.bias
    with torch.no_grad():
        bias[7] += 1.0      # the torch modules share the HF weights, the ONNX graph does not
    try:
        with pytest.raises(ExportError, match=r"logits disagrees \(logits_vs_torch\): max abs diff 1"):
            validate(split, out)
    finally:
        with torch.no_grad():
            bias[7] -= 1.0
