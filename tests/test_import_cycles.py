"""No import cycles among tprompt's modules: a module split in two whose halves import each other is one
module in two files.

Read from the source (``ast``), not from a running interpreter: every ``import`` counts, at module level,
inside functions and under ``if TYPE_CHECKING:`` (a deferred or type-only import hides a cycle from Python,
not from the design: two modules that need each other's names are one module in two files). A name a
package re-exports lazily (a ``_WHERE`` table for :func:`tprompt._lazy.lazy_exports`) counts as an import of
the module that defines it; the package's ``TYPE_CHECKING`` block that mirrors that table for type
checkers (see test_public_names.py) is the same table, not an import by the package.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIPPED = ("tests", "benchmarks", "build", "docs")


def module_files(root: Path, package: str = "tprompt") -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package rooted at ``root``."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] in SKIPPED or any(p.startswith(".") for p in rel.parts) or rel == Path("setup.py"):
            continue
        parts = [package, *rel.with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.Module, lazy: dict[str, str]) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, wherever it is; a lazy package's ``TYPE_CHECKING`` mirror of ``lazy`` aside."""
    mirror: set[int] = set()
    if lazy:
        for node in tree.body:
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                mirror |= {id(imp) for imp in node.body if isinstance(imp, ast.ImportFrom)
                           and all(a.name in lazy for a in imp.names)}
    return [node for node in ast.walk(tree)
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in mirror]


def _lazy_table(tree: ast.Module) -> dict[str, str]:
    """A package's ``_WHERE = {"name": ".module", ...}`` (lazy re-exports), if it has one."""
    for node in tree.body:
        if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_WHERE" for t in node.targets)
                and isinstance(node.value, ast.Dict)):
            return {k.value: v.value for k, v in zip(node.value.keys, node.value.values)
                    if isinstance(k, ast.Constant) and isinstance(v, ast.Constant)}
    return {}


def import_graph(root: Path, package: str = "tprompt") -> dict[str, set[str]]:
    """Module -> the package's modules it imports."""
    files = module_files(root, package)
    trees = {name: ast.parse(path.read_text(encoding="utf-8"), str(path)) for name, path in files.items()}
    lazy = {name: _lazy_table(tree) for name, tree in trees.items()}
    graph: dict[str, set[str]] = {name: set() for name in files}

    def add(src: str, target: str, names: list[str]) -> None:
        for name in names:
            if f"{target}.{name}" in files:  # ``from pkg import module``
                graph[src].add(f"{target}.{name}")
            elif name in lazy.get(target, {}):  # a lazily re-exported name: its defining module
                graph[src].add(target + lazy[target][name])
            elif target in files:
                graph[src].add(target)

    for src, tree in trees.items():
        is_package = files[src].name == "__init__.py"
        for node in _imports(tree, lazy[src]):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == package:
                        # ``import a.b.c`` runs a, a.b and a.b.c; the deepest is what it is for.
                        parts = alias.name.split(".")
                        while parts and ".".join(parts) not in files:
                            parts.pop()
                        if parts:
                            graph[src].add(".".join(parts))
                continue
            if node.level:
                base = src.split(".") if is_package else src.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == package:
                target = node.module
            else:
                continue
            add(src, target, [a.name for a in node.names])
    for src in graph:
        graph[src].discard(src)
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The graph's cycles: each strongly connected component of two or more modules, sorted (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in graph:
                continue
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return sorted(found)


def test_no_import_cycles() -> None:
    assert import_cycles(import_graph(ROOT)) == []


def test_the_graph_sees_tprompts_imports() -> None:
    graph = import_graph(ROOT)
    assert "tprompt.metric_specs" in graph["tprompt.evaluator.metrics"]  # module level, relative
    assert "tprompt.models.fake" in graph["tprompt.models.backend"]  # inside a function
    assert "tprompt.models.recorder" in graph["tprompt.graph.nodes"]
    assert "tprompt.evaluator.scoring" in graph["tprompt.graph.nodes"]  # through a lazy package's table
    assert "tprompt.stores" in graph["tprompt.experiments.grid"]  # a package's __init__


def test_the_check_sees_cycles(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text(
        '_WHERE = {"Thing": ".lazy"}\nif TYPE_CHECKING:\n    from .lazy import Thing\n')
    (tmp_path / "pkg" / "lazy.py").write_text("def f():\n    from .. import c\n")  # deferred: counts
    (tmp_path / "a.py").write_text("from .pkg import Thing\n")
    (tmp_path / "c.py").write_text("import tprompt.a\n")
    (tmp_path / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import d\n")  # type-only: counts
    (tmp_path / "d.py").write_text("from .b import x\n")
    (tmp_path / "e.py").write_text("import typing\nif typing.TYPE_CHECKING:\n    from .f import y\n")
    (tmp_path / "f.py").write_text("def g():\n    from . import e\n")
    graph = import_graph(tmp_path)
    assert graph["tprompt.b"] == {"tprompt.d"} and graph["tprompt.d"] == {"tprompt.b"}
    assert graph["tprompt.pkg"] == set()  # the lazy table's TYPE_CHECKING mirror is not an import of the package
    assert import_cycles(graph) == [["tprompt.a", "tprompt.c", "tprompt.pkg.lazy"], ["tprompt.b", "tprompt.d"],
                                    ["tprompt.e", "tprompt.f"]]


def test_the_two_deferred_circles_of_b94469e_are_seen(tmp_path: Path) -> None:
    # stores/projection.py imported export code inside a method, export code imported the projection under
    # TYPE_CHECKING: the check must call that a circle (it is how main looked at b94469e).
    (tmp_path / "stores").mkdir()
    (tmp_path / "stores" / "projection.py").write_text("def _export():\n    from .provenance import export_prompt\n")
    (tmp_path / "stores" / "provenance.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .projection import RunState\n")
    assert import_cycles(import_graph(tmp_path)) == [["tprompt.stores.projection", "tprompt.stores.provenance"]]
