"""The foreign set stays foreign: training code never reaches its renderer, neither in its imports
(read from the source, lazy imports included) nor when it runs (a training step with the renderer
made unimportable, in a fresh interpreter)."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .import_cycles import _imported, modules

ROOT = Path(__file__).resolve().parents[1]
ROOTS = {"edge_caption": ROOT / "edge_caption", "edge_caption.export": ROOT / "export"}
# the evaluation-only modules: the foreign renderer, its scenes and the empty views drawn with it
FOREIGN = ("edge_caption.evaluation.foreign", "edge_caption.evaluation.foreign_draw", "edge_caption.evaluation.empty")
# scikit-image's photos are the foreign set's backgrounds: training makes its own textures
BLOCKED = (*FOREIGN, "skimage")


def training_modules(files: dict[str, Path]) -> list[str]:
    found = [name for name, path in files.items() if path.parent == ROOT / "export"
             and path.name.startswith(("train", "augment", "finetune", "discriminator", "rollout"))]
    return sorted({*found, "edge_caption.evaluation.scenes"})


def _edges(module: str, path: Path, files: dict[str, Path]) -> list[tuple[str, bool, bool]]:
    """(target, at module level, used as a whole) for each of our modules `module` imports. "Used as a
    whole": the importer may call the target's functions (and so run their lazy imports); a package
    that is only the parent of an imported submodule runs just its module-level code."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top = set(map(id, tree.body))
    for node in tree.body:          # an import under a module-level `if`/`try` still runs at import
        if isinstance(node, (ast.If, ast.Try)):
            top |= {id(n) for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))}
    edges = []
    for node in ast.walk(tree):
        names = _imported(node, module, path.name == "__init__.py")
        if not names:
            continue
        level = id(node) in top
        if isinstance(node, ast.Import):
            used = set(names)
        else:
            used = {m for m in names[1:] if m in files}
            if any(m not in files for m in names[1:]):
                used.add(names[0])      # `from pkg import function`: pkg's functions may run
        for name in names:
            parts = name.split(".")
            for target in (".".join(parts[:i]) for i in range(1, len(parts) + 1)):
                if target in files and target != module:
                    edges.append((target, level, target in used))
    return edges


def reach(start: list[str], files: dict[str, Path]) -> dict[str, list[str]]:
    """Every module of ours that importing and running `start` may import: module -> the chain to it."""
    chains = {name: [name] for name in start}
    whole = set(start)
    work = [(name, True) for name in start]
    seen_top: set[str] = set()
    while work:
        module, is_whole = work.pop()
        for target, at_top, used in _edges(module, files[module], files):
            if not (is_whole or at_top):
                continue                # a lazy import inside a function nobody can call from here
            target_whole = used
            parents = [".".join(target.split(".")[:i]) for i in range(1, target.count(".") + 1)]
            for name, full in [(target, target_whole), *[(p, False) for p in parents if p in files]]:
                if full and name not in whole:
                    whole.add(name)
                    chains.setdefault(name, chains[module] + [name])
                    work.append((name, True))
                elif not full and name not in whole and name not in seen_top:
                    seen_top.add(name)
                    chains.setdefault(name, chains[module] + [name])
                    work.append((name, False))
    return chains


def test_training_code_never_imports_the_foreign_renderer():
    files = modules(ROOTS)
    assert set(FOREIGN) <= set(files)
    start = training_modules(files)
    assert "edge_caption.export.train" in start
    chains = reach(start, files)
    bad = {name: " -> ".join(chains[name]) for name in FOREIGN if name in chains}
    assert not bad, f"training code reaches the foreign renderer: {bad}"
    assert "edge_caption.evaluation.metrics" in chains and "edge_caption.export.families" in chains


def test_the_reach_check_follows_lazy_imports_and_names_used(tmp_path):
    pkg = tmp_path / "pkg"
    for name, text in {
        "__init__.py": "",
        "ev/__init__.py": "def run():\n    from . import far\n",
        "ev/near.py": "",
        "ev/far.py": "",
        "ev/lazy.py": "def f():\n    from . import far\n",
        "a.py": "from pkg.ev import near\n",                 # parent ev runs top level only: far not reached
        "b.py": "from pkg.ev import run\n",                  # ev.run may run: far reached
        "c.py": "def g():\n    from pkg.ev import lazy\n",   # lazy inside a function of a started module counts
    }.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text)
    files = modules({"pkg": pkg})
    assert "pkg.ev.far" not in reach(["pkg.a"], files)
    assert reach(["pkg.b"], files)["pkg.ev.far"] == ["pkg.b", "pkg.ev", "pkg.ev.far"]
    assert reach(["pkg.c"], files)["pkg.ev.far"] == ["pkg.c", "pkg.ev.lazy", "pkg.ev.far"]


RUN_TRAINING = textwrap.dedent("""
    import importlib, importlib.abc, json, pathlib, sys

    blocked, tried = set(sys.argv[2].split(",")), []

    class Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name in blocked or name.split(".")[0] in blocked:
                tried.append(name)
                raise ImportError(f"{name} is blocked: training must not use the foreign renderer")
            return None

    sys.meta_path.insert(0, Refuse())
    from edge_caption.export import train
    for path in sorted(pathlib.Path(train.__file__).parent.glob("augment*.py")):
        importlib.import_module("edge_caption.export." + path.stem)
    images, captions = train.training_data(24, progress=lambda message: None)
    summary = train.train("show-attend-tell", pathlib.Path(sys.argv[1]) / "run", steps=2, batch_size=4,
                          train_count=24, val_count=2, eval_every=2, threads=1, progress=False)
    print(json.dumps({"tried": tried, "images": len(images), "loaded": sorted(n for n in blocked if n in sys.modules)}))
""")


def test_a_training_step_runs_with_the_foreign_renderer_unimportable(tmp_path):
    pytest.importorskip("torch")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}    # render the training scenes afresh
    done = subprocess.run([sys.executable, "-c", RUN_TRAINING, str(tmp_path), ",".join(BLOCKED)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"tried": [], "images": 24, "loaded": []}
    assert (tmp_path / "run" / "weights.pt").is_file()
