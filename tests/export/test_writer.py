"""The one guarded writer (export/writer.py): we replace only what we made, never the model being
read, never a folder of other files, and a failure leaves the old folder as it was."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("onnx")

from edge_caption import ExportError  # noqa: E402
from edge_caption.bundle import Bundle  # noqa: E402
from edge_caption.captioner import default_bundle_path  # noqa: E402
from edge_caption.cli import main  # noqa: E402
from edge_caption.export import export  # noqa: E402
from edge_caption.export.writer import TRAINING_MARKER, TRAINING_RUN, check_destination, staging  # noqa: E402


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def int8(out: Path, **kwargs) -> Path:
    return export(default_bundle_path(), out, precision="int8", progress=False, **kwargs)


def test_overwrite_spares_a_folder_of_other_files(tmp_path, capsys):
    out = tmp_path / "outdir"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(ExportError, match=r"folder of other files \(keep.txt\).*nothing was written") as err:
            int8(out, overwrite=overwrite)
        assert "--overwrite" not in str(err.value)      # it is not ours: suggesting it would be wrong
    cli = main(["export", "--model", str(default_bundle_path()), "--out", str(out), "--precision", "int8",
                "--overwrite"])
    assert cli == 2 and "keep.txt" in capsys.readouterr().err
    assert snapshot(out) == {"keep.txt": b"mine"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outdir"]     # no scratch folder left


def test_an_empty_folder_may_be_written(tmp_path):
    (tmp_path / "empty.ecap").mkdir()
    assert Bundle.open(int8(tmp_path / "empty.ecap")).manifest.precision == "int8"


def test_the_model_being_exported_is_never_written(tmp_path):
    model = tmp_path / "modelcopy"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "vision-encoder-decoder"}')
    (model / "weights.pt").write_bytes(b"weights")
    (tmp_path / "link").symlink_to(model, target_is_directory=True)
    before = snapshot(model)
    # the same folder, through a symlink, a folder inside it, and a folder that holds it
    for out, relation in ((model, "is"), (tmp_path / "link", "is"), (model / "x.ecap", "is inside"),
                          (tmp_path, "holds")):
        with pytest.raises(ExportError, match=f"{relation} the model being read"):
            export(str(model), out, overwrite=True, progress=False)
    assert snapshot(model) == before and sorted(p.name for p in model.iterdir()) == ["config.json", "weights.pt"]

    source = tmp_path / "src.ecap"                      # quantizing a bundle over itself
    shutil.copytree(default_bundle_path(), source)
    before = snapshot(source)
    with pytest.raises(ExportError, match="is the model being read"):
        export(source, source, precision="int8", overwrite=True, progress=False)
    assert snapshot(source) == before


def test_overwrite_replaces_a_real_bundle(tmp_path):
    out = int8(tmp_path / "q.ecap")
    with pytest.raises(ExportError, match=r"already exists and holds a bundle; .*--overwrite"):
        int8(out)
    (out / "decoder_step.onnx").write_bytes(b"damaged")     # a bundle we wrote, even a broken one, is ours
    int8(out, overwrite=True)
    assert Bundle.open(out).manifest.precision == "int8"    # verifies every checksum
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.ecap"]
    (out / "notes.txt").write_text("the user's")            # ...but not a file someone put in it
    with pytest.raises(ExportError, match=r"a bundle with files it did not write \(notes.txt\)"):
        int8(out, overwrite=True)
    assert (out / "notes.txt").read_text() == "the user's"


def test_a_failure_mid_write_leaves_the_old_bundle(tmp_path, monkeypatch):
    from edge_caption.export import quantize

    out = int8(tmp_path / "q.ecap")
    before = snapshot(out)

    def fail(source, output, **kwargs):
        output.write_bytes(b"half a graph")
        raise RuntimeError("the disk filled up")

    monkeypatch.setattr(quantize, "quantize_graph", fail)
    with pytest.raises(RuntimeError, match="disk filled up"):
        int8(out, overwrite=True)
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.ecap"]


def test_a_failed_move_puts_the_old_folder_back(tmp_path, monkeypatch):
    out = int8(tmp_path / "q.ecap")
    before = snapshot(out)
    rename = Path.rename

    def rename_but_not_the_new_bundle(self, target):
        if self.name.startswith(".q.ecap.") and ".old." not in self.name:
            raise OSError("rename failed")
        return rename(self, target)

    with pytest.raises(OSError, match="rename failed"):
        with staging(out, overwrite=True) as scratch:
            (scratch / "new.txt").write_text("new")
            monkeypatch.setattr(Path, "rename", rename_but_not_the_new_bundle)
    monkeypatch.undo()
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.ecap"]


def test_build_never_writes_into_the_shipped_default_model(tmp_path, capsys):
    from edge_caption.export.tensorrt import BuildConfig, build_engines

    before = snapshot(default_bundle_path())
    # refused before TensorRT is looked for: the same answer on a machine without it
    with pytest.raises(ExportError, match=r"installed default model .*edge-caption build MY.ecap.*--out"):
        build_engines(default_bundle_path(), BuildConfig(), progress=False)
    assert main(["build"]) == 2 and "installed default model" in capsys.readouterr().err
    assert snapshot(default_bundle_path()) == before


def test_build_out_spares_other_files_and_its_source(tmp_path):
    from edge_caption.export.tensorrt import BuildConfig, build_engines

    out = tmp_path / "outdir"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match=r"folder of other files \(keep.txt\)"):
        build_engines(default_bundle_path(), BuildConfig(), out=out, progress=False)
    source = tmp_path / "src.ecap"
    shutil.copytree(default_bundle_path(), source)
    with pytest.raises(ExportError, match="is inside the model being read"):
        build_engines(source, BuildConfig(), out=source / "inner.ecap", progress=False)
    assert snapshot(out) == {"keep.txt": b"mine"} and not (source / "inner.ecap").exists()


def test_build_out_replaces_an_existing_bundle_only_with_overwrite(tmp_path, monkeypatch, capsys):
    """`build fp32.ecap --out int8.ecap` must not quietly replace a bundle already at int8.ecap."""
    from edge_caption.export.tensorrt import BuildConfig, build_engines

    from ..trt_double import install

    install(monkeypatch)
    earlier = tmp_path / "earlier.ecap"
    shutil.copytree(default_bundle_path(), earlier)
    before = snapshot(earlier)
    config = BuildConfig(batch_sizes=(1,), timing_cache=tmp_path / "c")
    with pytest.raises(ExportError, match=r"already exists and holds a bundle.*--overwrite"):
        build_engines(default_bundle_path(), config, out=earlier, progress=False)
    assert snapshot(earlier) == before
    assert main(["build", "--out", str(earlier), "--batch", "1", "--timing-cache", str(tmp_path / "c")]) == 2
    assert "--overwrite" in capsys.readouterr().err and snapshot(earlier) == before
    build_engines(default_bundle_path(), config, out=earlier, overwrite=True, progress=False)
    assert Bundle.open(earlier).manifest.engines


def test_a_crash_between_the_renames_is_repaired_by_the_next_write(tmp_path):
    """The old bundle set aside (.NAME.old.*) with no new one in place: the next write puts it back
    first, so a bundle is never left only under a hidden name."""
    target = tmp_path / "m.ecap"
    shutil.copytree(default_bundle_path(), tmp_path / ".m.ecap.old.abc123")
    with pytest.raises(ExportError, match="already exists and holds a bundle"):
        with staging(target, overwrite=False):
            pass
    assert (target / "manifest.json").is_file() and not list(tmp_path.glob(".m.ecap.old.*"))


def test_train_refuses_a_foreign_folder(tmp_path):
    pytest.importorskip("torch")
    from edge_caption.export.train import train

    out = tmp_path / "runs"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match=r"folder of other files \(keep.txt\)"):
        train("show-tell", out, steps=1, overwrite=True, progress=False)
    assert snapshot(out) == {"keep.txt": b"mine"}


def test_a_training_run_is_ours_by_its_marker(tmp_path):
    run = tmp_path / "run"
    with staging(run, False, kind=TRAINING_RUN) as scratch:
        (scratch / "weights.pt").write_bytes(b"w")
    assert json.loads((run / TRAINING_MARKER).read_text())["files"] == ["weights.pt"]
    with pytest.raises(ExportError, match="already exists and holds a training run; .*--overwrite"):
        check_destination(run, False, kind=TRAINING_RUN)
    assert check_destination(run, True, kind=TRAINING_RUN) == run.resolve()
    with pytest.raises(ExportError, match="folder of other files"):     # a run is not a bundle
        check_destination(run, True)
    (run / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match=r"training run with files it did not write \(keep.txt\)"):
        check_destination(run, True, kind=TRAINING_RUN)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match="is a file"):
        check_destination(tmp_path / "file", True)
