"""Sequence-level fine-tuning: the self-critical reward and baseline, the discriminator, the drawn captions,
the run it writes, and the CLI's option checks."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from edge_caption.cli import main  # noqa: E402
from edge_caption.decoding import decode  # noqa: E402
from edge_caption.evaluation.metrics import CiderD, cider_d  # noqa: E402
from edge_caption.export import families  # noqa: E402
from edge_caption.export.adapters import split_model  # noqa: E402
from edge_caption.export.discriminator import Discriminator, discriminator_step, pad_to  # noqa: E402
from edge_caption.export.finetune import advantages, finetune  # noqa: E402
from edge_caption.export.module_backend import ModuleBackend  # noqa: E402
from edge_caption.export.rollout import rollout, sequence_logprob, texts  # noqa: E402

REFS = [["a red circle", "a red circle in the middle"], ["two blue squares", "a pair of blue squares"],
        ["a small green star on the left"]]


def test_cider_reward_matches_cider_d_and_ranks_captions():
    hyps = ["a red circle", "two green squares", "a star"]
    # with the corpus equal to the scored set, the fixed document frequencies are cider_d's own
    assert CiderD(REFS).scores(REFS, hyps) == pytest.approx(cider_d(dict(enumerate(REFS)), dict(enumerate(hyps)))[1])
    reward = CiderD(REFS)
    good, bad = reward.scores([REFS[0], REFS[0]], ["A red circle.", "a blue square"])
    assert good > 1.0 and bad == 0.0      # normalized text; a caption sharing no n-gram of weight earns nothing


def test_advantage_is_sample_minus_its_greedy_baseline():
    # two images, two drawn captions each (image-major): each drawn reward minus its own image's greedy reward
    got = advantages([1.0, 0.5, 2.0, 0.0], [0.8, 1.0], draws=2)
    np.testing.assert_allclose(got, [0.2, -0.3, 1.0, -1.0])
    reward = CiderD(REFS)
    greedy = reward.scores([REFS[0]], ["a red circle"])
    drawn = reward.scores([REFS[0]] * 2, ["a red circle", "a blue circle"])
    adv = advantages(drawn, greedy, draws=2)
    assert adv[0] == pytest.approx(0.0) and adv[1] < 0      # as good as greedy: 0; worse: pushed down
    with pytest.raises(ValueError, match="3 drawn rewards for 2 images x 2 draws"):
        advantages([1.0, 2.0, 3.0], [0.0, 0.0], draws=2)


def test_discriminator_separates_a_trivially_separable_case():
    """Image class c in {0, 1}; its real caption is token 4 + c; the mismatched one the other class's; the
    drawn one a constant token. After a short training every kind is told apart."""
    torch.manual_seed(0)
    judge = Discriminator(vocab_size=10, image_dim=2, embed=8, hidden=16)
    optimizer = torch.optim.Adam(judge.parameters(), lr=1e-2)
    rng = np.random.default_rng(0)
    for _ in range(150):
        classes = torch.from_numpy(rng.integers(0, 2, 32))
        image = torch.nn.functional.one_hot(classes, 2).float()
        real = pad_to([torch.tensor([4 + c, 2]) for c in classes.tolist()])
        mismatched = pad_to([torch.tensor([5 - c, 2]) for c in classes.tolist()])
        drawn = pad_to([torch.tensor([7, 8, 2])] * 64)               # two draws per image
        record = discriminator_step(judge, optimizer, image, real, drawn, mismatched)
    assert record["acc_real"] == 1.0 and record["acc_drawn"] == 1.0 and record["acc_mismatched"] == 1.0
    assert record["loss"] < 0.1


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from edge_caption.export.train import train

    root = tmp_path_factory.mktemp("finetune")
    train("show-attend-tell", root / "init", steps=4, eval_every=4, batch_size=8, train_count=32, val_count=4,
          progress=False, cell="gru")
    return root


def test_greedy_rollout_is_the_runtime_greedy_decode(tiny_run):
    from edge_caption.preprocess import preprocess
    from edge_caption.evaluation.scenes import split_samples
    from edge_caption.export.api import manifest_for
    from edge_caption.manifest import TokenizerSpec
    from edge_caption.options import DecodeOptions

    model = families.load(tiny_run / "init")
    pixels = torch.from_numpy(preprocess([s.image[..., ::-1] for s in split_samples("val", count=4)],
                                         model.preprocess()))
    split = split_model(model)
    backend = ModuleBackend(split)
    manifest = manifest_for(split, split.preprocess, TokenizerSpec("-", (families.BOS,), (families.EOS,)))
    found = decode(backend, manifest, backend.encode(pixels.numpy()), DecodeOptions(max_new_tokens=8))
    tokens = rollout(model, pixels, 1, greedy=True, max_new_tokens=8)
    for row, hyps in zip(tokens.tolist(), found):
        assert tuple(t for t in row if t != families.PAD) == tuple(hyps[0].token_ids)
    drawn = rollout(model, pixels, 3, max_new_tokens=8, generator=torch.Generator().manual_seed(0))
    assert drawn.shape[0] == 12 and len(texts(model, drawn)) == 12
    logp = sequence_logprob(model, pixels, drawn)
    assert logp.shape == (12,) and bool((logp < 0).all()) and logp.requires_grad


@pytest.mark.parametrize("method", ["scst", "gan"])
def test_finetune_writes_a_run_export_reads(tiny_run, method, tmp_path):
    augment = 0.5 if method == "scst" else 0.0      # half of each scst batch from augment.py, as --augment 0.5
    summary = finetune(tiny_run / "init", tmp_path / "run", method=method, steps=2, eval_every=2, batch_size=4,
                       draws=2, train_count=32, val_count=4, judge_warmup=2, augment=augment, progress=False)
    assert summary["finetune"] == method and summary["best_val"]["step"] in (0, 2) and summary["augment"] == augment
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "val" in r] == [0, 2] and "reward" in log[1]
    if method == "gan":
        assert "judge_acc_real" in log[1]
    assert families.load(tmp_path / "run").cell_type == "gru"
    if method == "scst":        # one export is enough to show the run is one export reads (and slow on 2 cores)
        assert main(["export", "--model", str(tmp_path / "run"), "--out", str(tmp_path / "run.ecap")]) == 0


@pytest.mark.parametrize("argv, message", [
    (["--finetune", "scst"], "add --init RUN_DIR"),
    (["--init", "RUN", "--cell", "gru"], "--cell comes from the --init run"),
    (["--init", "NOT_A_RUN"], "is not a run written by `edge-caption train`"),
    (["--init", "RUN", "--finetune", "ppo"], "unknown --finetune 'ppo'; choose one of: scst, gan"),
    (["--init", "RUN", "--finetune", "scst", "--family", "show-tell"], "--family comes from the --init run"),
    ([], "train needs --family"),
    (["--family", "show-tell", "--cell", "gru"], "drop --cell or use --family show-attend-tell"),
    (["--family", "show-attend-tell", "--cell", "rnn"], "choose lstm or gru"),
    (["--init", "RUN", "--finetune", "scst", "--fit", "letterbox"], "--fit comes from the --init run"),
    (["--family", "show-tell", "--fit", "pad"], "unknown --fit 'pad'; choose one of: stretch, letterbox"),
    (["--init", "RUN", "--finetune", "scst", "--image-size", "128"], "--image-size comes from the --init run"),
    (["--family", "show-tell", "--image-size", "100"], "image size 100 does not fit the CNN's output stride"),
    (["--init", "RUN", "--finetune", "scst", "--empty", "0.1"], "--empty belongs to cross-entropy training"),
    (["--init", "RUN", "--finetune", "scst", "--augment", "1.5"], "--augment is the share of a batch"),
    (["--init", "NOT_A_RUN", "--finetune", "scst"], "is not a run written by `edge-caption train`"),
])
def test_cli_refuses_bad_combinations(tiny_run, tmp_path, capsys, argv, message):
    argv = [str(tiny_run / "init") if a == "RUN" else str(tmp_path / "nothing") if a == "NOT_A_RUN" else a
            for a in argv]
    assert main(["train", "--out", str(tmp_path / "out"), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
