"""No import cycle inside edge_caption or export/ (installed as edge_caption.export), lazy imports included;
and the checker itself, on small packages written for the purpose."""
from pathlib import Path


from .import_cycles import cycles, describe, import_graph

ROOT = Path(__file__).resolve().parents[1]
ROOTS = {"edge_caption": ROOT / "edge_caption", "edge_caption.export": ROOT / "export"}


def _package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_no_import_cycle_in_edge_caption_or_export():
    graph = import_graph(ROOTS)
    found = cycles(graph)
    assert not found, "import cycles (move the shared piece down a layer):\n" + "\n".join(
        describe(graph, group) for group in found)


def test_checker_finds_a_cycle_closed_by_a_lazy_import(tmp_path):
    pkg = _package(tmp_path / "pkg", {
        "__init__.py": "",
        "a.py": "from .b import helper\n",
        "b.py": "def helper():\n    from .a import thing\n    return thing\n",
        "c.py": "import pkg.a\n",
    })
    graph = import_graph({"pkg": pkg})
    assert cycles(graph) == [["pkg.a", "pkg.b"]]
    assert "b.py:2 imports pkg.a" in describe(graph, ["pkg.a", "pkg.b"])


def test_checker_resolves_relative_levels_packages_and_a_mapped_root(tmp_path):
    # ext/ is installed as pkg.ext, as export/ is as edge_caption.export. The cycle runs through
    # sub/__init__.py, which `from pkg.sub.deep import g` executes before deep.py.
    pkg = _package(tmp_path / "pkg", {
        "__init__.py": "",
        "low.py": "",
        "sub/__init__.py": "from .. import low\n\ndef f():\n    from ..ext import tool\n",
        "sub/deep.py": "g = 1\n",
    })
    ext = _package(tmp_path / "ext", {"__init__.py": "", "tool.py": "from pkg.sub.deep import g\n"})
    graph = import_graph({"pkg": pkg, "pkg.ext": ext})
    init = pkg / "sub" / "__init__.py"
    assert graph["pkg.sub"] == {"pkg.low": f"{init}:1", "pkg.ext": f"{init}:4", "pkg.ext.tool": f"{init}:4"}
    assert set(graph["pkg.ext.tool"]) == {"pkg.sub", "pkg.sub.deep"}
    assert cycles(graph) == [["pkg.ext.tool", "pkg.sub"]]


def test_checker_passes_a_package_without_cycles(tmp_path):
    # A package importing its own modules, and modules importing their ancestors (already imported
    # before they run), make no cycle; neither does a chain that only points one way, lazily or not.
    pkg = _package(tmp_path / "pkg", {
        "__init__.py": "from .a import x\n\ndef __getattr__(name):\n    from .c import z\n    return z\n",
        "a.py": "from . import b\nx = 1\n",
        "b.py": "def f():\n    from .c import z\n",
        "c.py": "import os\nimport pkg\nfrom pkg import sub\nz = 2\n",
        "sub/__init__.py": "from .leaf import y\n",
        "sub/leaf.py": "from .. import sub\nimport pkg.sub\ny = 3\n",
    })
    graph = import_graph({"pkg": pkg})
    assert graph["pkg"] == {"pkg.a": f"{pkg / '__init__.py'}:1", "pkg.c": f"{pkg / '__init__.py'}:4"}
    assert graph["pkg.c"] == {"pkg.sub": f"{pkg / 'c.py'}:3"}
    assert graph["pkg.sub.leaf"] == {}
    assert cycles(graph) == []
