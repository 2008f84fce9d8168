"""Our reference families: the exported bundle decodes token for token like the PyTorch module, and
the cached / stateful step like a full recompute, greedy and beam, through the one decoding loop."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from edge_caption import EdgeCaptioner  # noqa: E402
from edge_caption.errors import ExportError  # noqa: E402
from edge_caption.decoding import decode  # noqa: E402
from edge_caption.export import export, families  # noqa: E402
from edge_caption.export.adapters import split_model  # noqa: E402
from edge_caption.export.module_backend import ModuleBackend  # noqa: E402
from edge_caption.manifest import StateSpec  # noqa: E402
from edge_caption.options import DecodeOptions  # noqa: E402
from edge_caption.preprocess import preprocess  # noqa: E402
from edge_caption.evaluation.scenes import split_samples  # noqa: E402

FAMILIES = list(families.FAMILIES)
# variant -> (family, config): every family, and the attention family with a GRU (its state is h alone)
VARIANTS = {**{f: (f, {}) for f in FAMILIES}, "show-attend-tell-gru": ("show-attend-tell", {"cell": "gru"})}
OPTIONS = [dict(num_beams=1), dict(num_beams=3), dict(num_beams=3, num_return_sequences=2, length_penalty=0.5),
           dict(num_beams=2, no_repeat_ngram_size=2, repetition_penalty=1.3, min_new_tokens=3)]


def random_model(variant: str, seed: int = 0):
    """Random weights made to caption like a model: image-dependent captions of different lengths.

    Out of the box the CNN's signal fades to ~1e-5 (every image gets one caption) and the logits
    are tiny (EOS never, or always). So: batch-norm statistics calibrated on scenes, the linear
    layers' gain raised, and the EOS bias searched until greedy captions end at >= 3 lengths."""
    from edge_caption.export.api import manifest_for
    from edge_caption.manifest import TokenizerSpec

    family, config = VARIANTS[variant]
    model = families.create(family, seed=seed, **config)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None          # a cumulative average over the calibration batch
    model.train()
    with torch.no_grad():
        model.encode(torch.from_numpy(_pixels(32, "val")))
        model.eval()
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.mul_(3.0)
        if hasattr(model, "image_embed"):       # show-tell sees the image only through this
            model.image_embed.weight.mul_(10.0)
    split = split_model(model)
    backend = ModuleBackend(split)
    manifest = manifest_for(split, split.preprocess, TokenizerSpec("-", (families.BOS,), (families.EOS,)))
    memory = backend.encode(_pixels())
    for bias in np.arange(-3.0, 12.0, 0.1):
        with torch.no_grad():
            model.out.bias[families.EOS] = float(bias)
        found = decode(backend, manifest, memory, DecodeOptions(max_new_tokens=12))
        if len({len(h[0].token_ids) for h in found}) >= 3:
            return model
    raise AssertionError(f"no EOS bias gives {family} captions of different lengths")


class _Bundles(dict):
    """variant -> (model, bundle path), exported on first use: `-k gru` exports the GRU variant alone."""

    def __init__(self, root):
        super().__init__()
        self.root = root

    def __missing__(self, variant):
        model = random_model(variant)
        self[variant] = (model, export(model, self.root / f"{variant}.ecap", progress=False))
        return self[variant]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    return _Bundles(tmp_path_factory.mktemp("families"))


def _pixels(count: int = 6, split: str = "test"):
    samples = list(split_samples(split, count=count))
    model = families.create("show-tell")
    return preprocess([s.image[..., ::-1] for s in samples], model.preprocess())


class RecomputeBackend:
    """No cache and no carried state: every step reruns the model over the whole history."""

    name = "recompute"

    def __init__(self, model):
        self.model = model

    def encode(self, pixel_values):
        return {"pixels": pixel_values}

    def step(self, input_ids, memory, state):
        history = np.concatenate([state["history"], input_ids], axis=1)
        pixels = torch.from_numpy(memory["pixels"]).repeat_interleave(history.shape[0] // len(memory["pixels"]), 0)
        with torch.no_grad():
            logits = self.model.recompute(pixels, torch.from_numpy(history))
        return logits.numpy(), {"history": history}, {}


def _recompute_manifest(manifest):
    from dataclasses import replace

    from edge_caption.manifest import GraphSpec

    return replace(manifest, memory=("pixels",), tokens_per_step=None, step_extras=(),
                   encoder=GraphSpec("-", ("pixel_values",), ("pixels",)),
                   decoder_step=GraphSpec("-", ("input_ids", "pixels", "history"), ("logits", "history_out")),
                   state=(StateSpec("history", "history_out", ("N", "T"), dtype="int64", grow_axis=1),))


@pytest.mark.parametrize("family", VARIANTS)
@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: "-".join(f"{k}{v}" for k, v in o.items()))
def test_bundle_matches_module_and_recompute(bundles, family, opts):
    model, path = bundles[family]
    captioner = EdgeCaptioner(path, backend="onnxruntime")
    manifest = captioner.manifest
    options = DecodeOptions.from_mapping(manifest.decoding).replace(max_new_tokens=12, **opts)
    pixels = _pixels()
    trace = "attention" if manifest.step_extras else None

    onnx = decode(captioner._backend, manifest, captioner._backend.encode(pixels), options, trace=trace)
    module_backend = ModuleBackend(split_model(model))
    torch_ = decode(module_backend, manifest, module_backend.encode(pixels), options, trace=trace)
    recompute = RecomputeBackend(model)
    again = decode(recompute, _recompute_manifest(manifest), recompute.encode(pixels), options)

    lengths = set()
    for image, (a, b, c) in enumerate(zip(onnx, torch_, again)):
        assert [h.token_ids for h in a] == [h.token_ids for h in b], f"image {image}: ONNX vs PyTorch module"
        assert [h.token_ids for h in b] == [h.token_ids for h in c], f"image {image}: step vs full recompute"
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], rtol=1e-4, atol=1e-5)
        lengths.update(len(h.token_ids) for h in a)
        if trace:
            for h_onnx, h_torch in zip(a, b):
                assert h_onnx.trace.shape == (len(h_onnx.token_ids), 36)
                np.testing.assert_allclose(h_onnx.trace, h_torch.trace, atol=1e-5)
    assert len(lengths) > 1, "every caption has the same length: the test would not exercise stopping"


@pytest.mark.parametrize("variant", ["show-attend-tell", "show-attend-tell-gru"])
def test_attention_maps(bundles, variant):
    _, path = bundles[variant]
    frame = next(iter(split_samples("test", count=1))).image
    with EdgeCaptioner(path) as captioner:
        for opts in (dict(num_beams=1), dict(num_beams=3, num_return_sequences=2)):
            caption = captioner.caption(frame, return_attention=True, **opts)
            assert caption.attention.shape == (len(caption.token_ids), 6, 6)
            assert caption.attention.dtype == np.float32
            np.testing.assert_allclose(caption.attention.sum(axis=(1, 2)), 1.0, rtol=1e-5)
            assert caption.alternatives[0].attention.shape[0] == len(caption.alternatives[0].token_ids) \
                if caption.alternatives else True
        assert captioner.caption(frame).attention is None
    _, other = bundles["cnn-transformer"]
    with EdgeCaptioner(other) as captioner:
        assert captioner.caption(frame, return_attention=True).attention is None


def test_manifest_declares_the_family(bundles):
    rnn = EdgeCaptioner(bundles["show-tell"][1]).manifest
    assert rnn.tokens_per_step == 1 and rnn.memory == ("init_h", "init_c")
    assert rnn.decoder_step.inputs == ("input_ids", "h", "c")      # memory that only seeds the state is not fed
    sat = EdgeCaptioner(bundles["show-attend-tell"][1]).manifest
    assert sat.step_extras == ("attention",) and sat.attention_grid == (6, 6)
    gru = EdgeCaptioner(bundles["show-attend-tell-gru"][1]).manifest
    assert gru.memory == ("features", "keys", "init_h") and [s.input for s in gru.state] == ["h"]
    assert gru.decoder_step.inputs == ("input_ids", "features", "keys", "h")
    tf = EdgeCaptioner(bundles["cnn-transformer"][1]).manifest
    assert tf.tokens_per_step is None and tf.state[0].grow_axis == 2


def test_train_save_load_export(tmp_path):
    from edge_caption.cli import main
    from edge_caption.export.train import train

    summary = train("show-attend-tell", tmp_path / "run", steps=12, eval_every=6, train_count=64, val_count=16,
                    batch_size=16, progress=False)
    assert set(summary["best_val"]) >= {"CIDEr", "BLEU-4", "exact", "step"}
    log = (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()
    assert sum('"val"' in line for line in log) == 2
    loaded = families.load(tmp_path / "run")
    assert loaded.family == "show-attend-tell"
    assert main(["export", "--model", str(tmp_path / "run"), "--out", str(tmp_path / "run.ecap")]) == 0
    assert EdgeCaptioner(tmp_path / "run.ecap").manifest.family == "show-attend-tell"
    with pytest.raises(Exception, match="already exists and holds a training run.*--overwrite"):
        train("show-tell", tmp_path / "run", steps=1, progress=False)


def test_training_goes_on_from_an_earlier_run(tmp_path):
    from edge_caption.export.train import train

    train("show-tell", tmp_path / "a", steps=2, eval_every=2, batch_size=8, train_count=32, val_count=4, progress=False)
    summary = train("show-tell", tmp_path / "b", steps=2, eval_every=2, batch_size=8, train_count=32, val_count=4,
                    init=tmp_path / "a", augment=0.0, empty=0.0, progress=False)
    assert summary["init"] == str(tmp_path / "a") and summary["augment"] == 0.0 and summary["fit"] == "stretch"
    boxed = train("show-tell", tmp_path / "boxed", steps=2, eval_every=2, batch_size=8, train_count=32, val_count=4,
                  init=tmp_path / "a", fit="letterbox", progress=False)
    assert boxed["fit"] == "letterbox"
    bundle = export(families.load(tmp_path / "boxed"), tmp_path / "boxed.ecap", progress=False)
    manifest = EdgeCaptioner(bundle).manifest
    assert manifest.preprocess.fit == "letterbox" and manifest.format_version == 4
    with pytest.raises(ExportError, match="unknown fit 'pad'; choose one of: stretch, letterbox"):
        train("show-tell", tmp_path / "e", steps=1, fit="pad", progress=False)
    small = train("show-tell", tmp_path / "small", steps=2, eval_every=2, batch_size=8, train_count=32, val_count=4,
                  init=tmp_path / "a", image_size=64, progress=False)
    assert small["image_size"] == 64 and families.load(tmp_path / "small").preprocess().size == (64, 64)
    with pytest.raises(ExportError, match="image size 72 does not fit"):
        train("show-tell", tmp_path / "f", steps=1, image_size=72, progress=False)
    with pytest.raises(ExportError, match="holds a show-tell model.*--family show-tell"):
        train("show-attend-tell", tmp_path / "c", steps=1, init=tmp_path / "a", progress=False)
    with pytest.raises(ExportError, match="shares of a batch"):
        train("show-tell", tmp_path / "d", steps=1, augment=0.9, empty=0.2, progress=False)


@pytest.mark.parametrize("family", ["show-attend-tell", "cnn-transformer"])
def test_resized_keeps_the_weights_and_resamples_the_grid(family):
    model = families.create(family, seed=0)
    with torch.no_grad():
        model.grid_pos.normal_()
    big = model.resized(128)
    assert big.image_size == big.config["image_size"] == 128 and big.preprocess().size == (128, 128)
    old, new = model.state_dict(), big.state_dict()
    assert all(torch.equal(old[k], new[k]) for k in old if k != "grid_pos")
    assert new["grid_pos"].shape == (1, 64, old["grid_pos"].shape[2])

    def corners(rows, side):
        return rows[0].reshape(side, side, -1)[[0, 0, -1, -1], [0, -1, 0, -1]]

    assert torch.allclose(corners(old["grid_pos"], 6), corners(new["grid_pos"], 8))
    with torch.no_grad():
        assert 64 in big.encode(torch.zeros(1, 3, 128, 128))[0].shape      # one memory row per cell of 8 x 8
    with pytest.raises(ExportError, match="image size 100 does not fit.*multiple of 16"):
        model.resized(100)


def test_training_is_reproducible_from_the_seed(tmp_path):
    from edge_caption.export.train import train

    for name in ("a", "b"):
        train("show-tell", tmp_path / name, steps=4, eval_every=4, batch_size=8, train_count=32, val_count=4,
              seed=5, progress=False)
    a = torch.load(tmp_path / "a" / "weights.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "weights.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = [json.loads(line) for line in (tmp_path / "a" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [4, 4] and "loss" in log[0] and "CIDEr" in log[1]["val"]


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_trained_family_is_exact_on_the_test_split(variant, tmp_path):
    """A model trained for a few minutes (real, varied captions): ONNX bundle = PyTorch module =
    full recompute on 100 test-split images, greedy and beam 3."""
    from edge_caption.export.train import train

    family, config = VARIANTS[variant]
    train(family, tmp_path / "run", steps=300, eval_every=300, train_count=4000, val_count=100, progress=False,
          **config)
    model = families.load(tmp_path / "run")
    path = export(model, tmp_path / "bundle.ecap", progress=False)
    captioner = EdgeCaptioner(path, backend="onnxruntime")
    manifest = captioner.manifest
    pixels = _pixels(100)
    module_backend = ModuleBackend(split_model(model))
    recompute = RecomputeBackend(model)
    for opts in (dict(num_beams=1), dict(num_beams=3)):
        options = DecodeOptions.from_mapping(manifest.decoding).replace(**opts)
        onnx = decode(captioner._backend, manifest, captioner._backend.encode(pixels), options)
        torch_ = decode(module_backend, manifest, module_backend.encode(pixels), options)
        again = decode(recompute, _recompute_manifest(manifest), recompute.encode(pixels), options)
        assert [h[0].token_ids for h in onnx] == [h[0].token_ids for h in torch_]
        assert [h[0].token_ids for h in torch_] == [h[0].token_ids for h in again]
