"""Lazy packages show their names to type checkers: a literal ``__all__`` and a ``TYPE_CHECKING`` import each.

``tprompt.optimize`` was ``Any`` to mypy: the names load through ``__getattr__``
and ``__all__`` was built with ``*sorted(...)``. mypy (run by .ci/run) checks
the imports resolve; this test checks that none is missing or misplaced.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAZY = ["__init__.py", "graph/__init__.py", "models/__init__.py"]


def _parts(path: Path) -> tuple[dict[str, str], dict[str, str], ast.expr | None]:
    tree = ast.parse(path.read_text())
    where: dict[str, str] = {}
    typed: dict[str, str] = {}
    all_node = None
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id == "_WHERE":
                where = ast.literal_eval(node.value)
            elif node.targets[0].id == "__all__":
                all_node = node.value
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom)
                for alias in imp.names:
                    typed[alias.asname or alias.name] = "." * imp.level + (imp.module or "")
    return where, typed, all_node


@pytest.mark.parametrize("name", LAZY)
def test_lazy_names_are_visible_to_type_checkers(name: str) -> None:
    where, typed, all_node = _parts(ROOT / name)
    assert where, f"{name} has no _WHERE table"
    assert typed == where, f"{name}: the TYPE_CHECKING imports differ from _WHERE"
    assert isinstance(all_node, ast.Tuple) and all(isinstance(e, ast.Constant) for e in all_node.elts), \
        f"{name}: __all__ must be a literal tuple of strings"
    assert set(ast.literal_eval(all_node)) - {"__version__"} == set(where)


def test_the_check_sees_a_computed_all(tmp_path: Path) -> None:
    bad = tmp_path / "pkg.py"
    bad.write_text('_WHERE = {"f": ".m"}\nif TYPE_CHECKING:\n    from .m import f\n__all__ = tuple(sorted(_WHERE))\n')
    where, typed, all_node = _parts(bad)
    assert typed == where and not isinstance(all_node, ast.Tuple)
