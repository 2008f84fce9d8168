"""Import cycles among a package's own modules, read from the source with ast.

Every import counts, the lazy ones inside functions included: a cycle that only works because one side
imports late is still a layer pointing backwards. An import of a module's own ancestor package is no
edge (Python has imported every ancestor before the module runs, so it imports nothing new).
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Mapping

Graph = dict[str, dict[str, str]]     # module -> {imported module: "file:line" of the import}


def modules(roots: Mapping[str, Path]) -> dict[str, Path]:
    """Dotted name -> file for every .py under each root; `roots` maps a package name to its folder
    (our export/ is installed as edge_caption.export: {"edge_caption.export": Path("export")})."""
    found = {}
    for package, folder in roots.items():
        for path in sorted(Path(folder).rglob("*.py")):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """The dotted names an import statement may load: the module named, and each imported name as a
    submodule (`from pkg import sub`); which of them are modules of ours is decided by the caller."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        up = package[: len(package) - (node.level - 1)]
        base = ".".join(up + ([base] if base else []))
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def import_graph(roots: Mapping[str, Path]) -> Graph:
    """Which of our modules each of our modules imports, anywhere in its source."""
    files = modules(roots)
    graph: Graph = {}
    for module, path in files.items():
        ancestors = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
        edges: dict[str, str] = {}
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            for name in _imported(node, module, path.name == "__init__.py"):
                # `import a.b.c` runs a/__init__ and a/b/__init__ too.
                parts = name.split(".")
                for target in (".".join(parts[:i]) for i in range(1, len(parts) + 1)):
                    if target in files and target != module and target not in ancestors:
                        edges.setdefault(target, f"{path}:{node.lineno}")
        graph[module] = edges
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted; in sorted order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(groups)


def describe(graph: Graph, group: list[str]) -> str:
    """One import of each module of `group` on another of it, with where it stands."""
    members = set(group)
    return "; ".join(f"{where} imports {target}" for module in group
                     for target, where in sorted(graph[module].items()) if target in members)
