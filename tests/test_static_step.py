"""The TensorRT-shaped decoder step (export/static_step.py, `export(..., targets=("onnx", "tensorrt"))`):
its graph has static shapes, and ONNX Runtime running it through our decoding loop gives `generate()`'s
tokens, with the beam reorder and the top-k done inside the graph. The TensorRT backend runs the same
graph against the TensorRT double in test_tensorrt_backend.py.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
from edge_caption.backends.onnxruntime import OnnxRuntimeBackend  # noqa: E402
from edge_caption.bundle import Bundle  # noqa: E402
from edge_caption.decoding import decode  # noqa: E402
from edge_caption.errors import BackendUnavailableError, ExportError  # noqa: E402
from edge_caption.export import export  # noqa: E402
from edge_caption.export.testing import IMAGE  # noqa: E402
from edge_caption.options import DecodeOptions  # noqa: E402

from .test_parity import GRID, reference  # noqa: E402

TRT = ("onnx", "tensorrt")


def _dims(value) -> list:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


class Counting:
    """Counts what the decoding loop reads from each step: the in-graph top-k or whole logits rows."""

    def __init__(self, backend):
        self.backend, self.reads = backend, {"top": 0, "logits": 0}
        self.static_step, self.encode = True, backend.encode

    def static_session(self, *args):
        session, reads = self.backend.static_session(*args), self.reads
        top, logits = session.top, session.logits
        session.top = lambda: reads.__setitem__("top", reads["top"] + 1) or top()
        session.logits = lambda: reads.__setitem__("logits", reads["logits"] + 1) or logits()
        return session


def test_the_graph_has_static_shapes_and_the_top_k_inside(exported):
    _, bundle = exported("vit_gpt2", 0, TRT)
    m = Bundle.open(bundle).manifest
    assert m.static_step is not None and m.static_step.top_k == 16      # max(2, 1 + one EOS) x 8 beams
    assert json.loads((bundle / "manifest.json").read_text())["format_version"] == 2
    graph = onnx.load(str(bundle / m.static_step.file)).graph
    dims = {v.name: _dims(v) for v in (*graph.input, *graph.output)}
    assert dims["input_ids"] == ["N", 1] and dims["position"] == [1] and dims["beam_index"] == ["N"]
    for spec in m.state:
        # rows in (P) become rows out (N) by the gather; the cache length C never changes
        assert dims[spec.input] == ["P", dims[spec.input][1], "C", dims[spec.input][3]]
        assert dims[spec.output] == ["N", *dims[spec.input][1:]]
    assert dims["topk_scores"] == dims["topk_ids"] == ["N", 16] and dims["logits"] == ["N", m.vocab_size]
    ops = [node.op_type for node in graph.node]
    assert ops.count("TopK") == 1 and ops.count("LogSoftmax") == 1
    # a bundle without the TensorRT target is still format 1, readable by older runtimes
    _, plain = exported("vit_gpt2", 0)
    data = json.loads((plain / "manifest.json").read_text())
    assert data["format_version"] == 1 and "static_step" not in data


@pytest.mark.parametrize("family", ["vit_gpt2", "swin_gpt2", "deit_bert", "blip"])
def test_onnxruntime_on_the_static_step_gives_generate_tokens(exported, family):
    model, bundle = exported(family, 0, TRT)
    b = Bundle.open(bundle)
    m = b.manifest
    pixels = np.random.default_rng(100).standard_normal((3, 3, IMAGE, IMAGE)).astype(np.float32)
    backend = Counting(OnnxRuntimeBackend(b, static_step=True))
    memory = backend.encode(pixels)
    for grid in GRID:
        opts = DecodeOptions(max_new_tokens=10).replace(**grid)
        expected = reference(model, pixels, opts, len(m.tokenizer.prompt_ids), set(m.tokenizer.eos_token_ids))
        backend.reads.update(top=0, logits=0)
        got = [h.token_ids for per_image in decode(backend, m, memory, opts) for h in per_image]
        assert got == expected, f"{family} {grid}"
        if opts.repetition_penalty == 1.0 and opts.no_repeat_ngram_size == 0 and opts.min_new_tokens == 0:
            assert backend.reads["logits"] == 0 < backend.reads["top"], "every step should use the graph's top-k"
        else:
            assert backend.reads["logits"] > 0


def test_more_beams_than_the_graph_serves_read_whole_rows(exported):
    model, bundle = exported("vit_gpt2", 0, TRT)
    b = Bundle.open(bundle)
    pixels = np.random.default_rng(7).standard_normal((2, 3, IMAGE, IMAGE)).astype(np.float32)
    backend = Counting(OnnxRuntimeBackend(b, static_step=True))
    opts = DecodeOptions(max_new_tokens=6, num_beams=9)        # needs 18 candidates per row; the graph has 16
    tok = b.manifest.tokenizer
    got = [h.token_ids for per_image in decode(backend, b.manifest, backend.encode(pixels), opts) for h in per_image]
    assert got == reference(model, pixels, opts, len(tok.prompt_ids), set(tok.eos_token_ids))
    assert backend.reads["top"] == 0 < backend.reads["logits"]


def test_a_bundle_without_the_static_step_says_how_to_get_it(exported):
    _, plain = exported("vit_gpt2", 0)
    with pytest.raises(BackendUnavailableError, match="--targets onnx,tensorrt"):
        OnnxRuntimeBackend(Bundle.open(plain), static_step=True)


def test_int8_for_onnxruntime_leaves_the_static_step_out(exported, tmp_path):
    _, bundle = exported("vit_gpt2", 0, TRT)
    out = export(bundle, tmp_path / "int8.ecap", precision="int8", progress=False)
    m = Bundle.open(out).manifest
    assert m.static_step is None and not (out / "decoder_step_static.onnx").exists()


def test_reference_families(tmp_path):
    from .export.test_families import _pixels, random_model

    model = random_model("cnn-transformer")
    bundle = export(model, tmp_path / "t.ecap", targets=TRT, progress=False)
    b = Bundle.open(bundle)
    pixels = _pixels()
    dynamic, static = OnnxRuntimeBackend(b), OnnxRuntimeBackend(b, static_step=True)
    for opts in (DecodeOptions(max_new_tokens=12), DecodeOptions(max_new_tokens=12, num_beams=3)):
        want = decode(dynamic, b.manifest, dynamic.encode(pixels), opts)
        got = decode(static, b.manifest, static.encode(pixels), opts)
        assert [[h.token_ids for h in per] for per in got] == [[h.token_ids for h in per] for per in want]
    with pytest.raises(ExportError, match="not a KV cache"):
        export(random_model("show-tell"), tmp_path / "s.ecap", targets=TRT, progress=False)


class _TableStep:
    """A decoder whose logits are a table row picked by the last token: small integers, so ties are everywhere."""

    def __init__(self, vocab: int = 40, seed: int = 0):
        self.table = np.random.default_rng(seed).integers(0, 6, (vocab, vocab)).astype(np.float32)

    def step(self, input_ids, memory, state):               # the dynamic backend
        return self.table[input_ids[:, -1]], {}, {}


class _GpuLikeSession:
    """A static session whose top-k orders equal values the other way round (higher id first), as a
    GPU top-k may: the decoding loop must still give the dynamic loop's tokens."""

    def __init__(self, table: np.ndarray, top_k: int):
        self.table, self.top_k = table, top_k

    def run(self, input_ids, position, beam_index, beam_scores):
        from edge_caption.decoding.processors import log_softmax

        self._logits = self.table[input_ids[:, 0]]
        scores = log_softmax(self._logits) + beam_scores[:, None]
        ids = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
        order = np.lexsort((-ids, -scores), axis=-1)[:, : self.top_k]
        self._top = np.take_along_axis(scores, order, axis=1), order

    def top(self):
        return self._top

    def logits(self):
        return self._logits

    def keep(self, images):
        pass


@pytest.mark.parametrize("beams", [1, 2, 3, 4])
def test_ties_resolve_as_generate_does_whatever_the_top_k_order(beams):
    from types import SimpleNamespace

    from edge_caption.decoding.beam import beam_search
    from edge_caption.decoding.greedy import greedy_search
    from edge_caption.decoding.state import DecoderState
    from edge_caption.decoding.static import StaticDecoderState

    model = _TableStep()
    manifest = SimpleNamespace(state=(), tokens_per_step=None)
    prompt, eos = np.array([1, 2], np.int64), np.array([0], np.int64)
    search = greedy_search if beams == 1 else beam_search
    images = 6
    for options in (DecodeOptions(num_beams=beams, max_new_tokens=7),
                    DecodeOptions(num_beams=beams, max_new_tokens=7, length_penalty=0.6, early_stopping=True)):
        memory = {"m": np.zeros((images, 1), np.float32)}
        want = search(DecoderState(model, manifest, memory, beams), prompt, eos, options)
        static = StaticDecoderState(_GpuLikeSession(model.table, top_k=12), manifest, images, beams, length=9)
        got = search(static, prompt, eos, options)
        assert [[(ids, score) for ids, score, _ in per] for per in got] == \
            [[(ids, score) for ids, score, _ in per] for per in want], options
