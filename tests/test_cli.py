"""The CLI's answers to mistakes: never a silent fall-back to the shipped model, every input accounted for,
Hugging Face's flag spellings, no prefix matching (issue 16, items 2-4)."""
from __future__ import annotations

import argparse
import json
import shutil

import pytest

from edge_caption.cli import build_parser, main
from edge_caption.cli.common import SAMPLE
from edge_caption.options import DecodeOptions

DEFAULT = SAMPLE.parent.parent / "models" / "default.ecap"


@pytest.fixture
def model_folder(tmp_path):
    """A Hugging Face model folder as `save_pretrained` leaves it, minus the weights: the user forgot to export."""
    folder = tmp_path / "my-vit-gpt2"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "vision-encoder-decoder"}))
    return folder


def test_a_model_folder_first_is_an_error_naming_the_export_command(model_folder, capsys):
    assert main(["caption", str(model_folder), str(SAMPLE)]) == 2
    out, err = capsys.readouterr()
    assert out == ""                 # nothing captioned with the shipped model in its place
    assert f"edge-caption export --model {model_folder} --out {model_folder}.ecap" in err


@pytest.mark.parametrize("command", [["caption", "-m", "{folder}", str(SAMPLE)], ["info", "{folder}"],
                                     ["stream", "{folder}", "--source", "0"]])
def test_a_model_folder_as_bundle_is_an_error_in_every_command(model_folder, capsys, command):
    assert main([part.format(folder=model_folder) for part in command]) == 2
    assert "edge-caption export --model" in capsys.readouterr().err


def test_a_bundle_typo_says_the_bundle_is_missing(tmp_path, capsys):
    (tmp_path / "vitgpt2.ecap").symlink_to(DEFAULT, target_is_directory=True)
    assert main(["caption", str(tmp_path / "vitgtp2.ecap"), str(SAMPLE)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert f"no bundle at {tmp_path / 'vitgtp2.ecap'}" in err and "did you mean" in err and "vitgpt2.ecap" in err
    assert "no images" not in err


@pytest.mark.parametrize("kind", ["empty folder", "glob"])
def test_an_input_without_images_is_an_error(tmp_path, capsys, kind):
    empty = tmp_path / "empty"
    empty.mkdir()
    given = str(empty) if kind == "empty folder" else str(tmp_path / "*.png")
    assert main(["caption", given]) == 2
    err = capsys.readouterr().err
    assert (f"{empty} holds no images" if kind == "empty folder" else "no file matches") in err


def test_one_bad_input_among_several_costs_the_others_nothing(tmp_path, capsys):
    first, second = tmp_path / "a.jpg", tmp_path / "b.jpg"
    shutil.copy(SAMPLE, first)
    shutil.copy(SAMPLE, second)
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = tmp_path / "missing.png"
    assert main(["caption", str(first), str(missing), str(empty), str(second), "--json"]) == 2
    out, err = capsys.readouterr()
    assert [json.loads(line)["image"] for line in out.splitlines()] == [str(first), str(second)]
    assert f"no image at {missing}" in err and f"{empty} holds no images" in err


def test_hugging_face_spellings_are_the_dashed_flags(capsys):
    parser = build_parser()
    for name in DecodeOptions.names():
        value = "never" if name == "early_stopping" else "2"
        dashed = parser.parse_args(["caption", f"--{name.replace('_', '-')}", value])
        underscored = parser.parse_args(["caption", f"--{name}", value])
        assert getattr(underscored, name) == getattr(dashed, name) is not None, name
    assert main(["caption", "--sample", "--num_beams", "2", "--num_return_sequences", "2", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["alternatives"]) == 1
    assert "--num_beams" in parser._subparsers._group_actions[0].choices["caption"].format_help()


def _parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def test_no_parser_matches_prefixes_and_a_near_miss_is_answered(capsys):
    parser = build_parser()
    assert all(not p.allow_abbrev for p in _parsers(parser))
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["caption", "--sample", "--num-beam", "2"])     # once taken as --num-beams
    assert exit_.value.code == 2
    assert "did you mean --num-beams?" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["eval", "--data", "test", "--batch_size", "4"])
    assert "did you mean --batch-size?" in capsys.readouterr().err


@pytest.mark.parametrize("argv,said", [
    (["stream", "--source", "0", "--backoff", "a,b"], "--backoff: expected two numbers of seconds like 0.5,10"),
    (["eval", "--data", "test", "--batch-size", "0"], "--batch-size: expected an integer >= 1, got 0"),
    (["eval", "--data", "test", "--limit", "-3"], "--limit: expected an integer >= 1, got -3"),
])
def test_bad_numbers_are_refused_as_flags_are_parsed(argv, said, capsys):
    """Exit 2 naming the flag and the expected form, not a traceback after the model has loaded."""
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2 and said in capsys.readouterr().err


def test_a_predictions_file_in_a_missing_folder_is_refused_before_the_evaluation(capsys):
    assert main(["eval", "--data", "test", "--predictions", "/no/such/folder/p.json"]) == 2
    assert "its folder does not exist" in capsys.readouterr().err
