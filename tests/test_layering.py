"""The core never imports the front ends: stores, graph, agents, models, experiments and evaluator work
without Textual or Typer."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CORE = ("tprompt.config", "tprompt.stores", "tprompt.graph", "tprompt.agents", "tprompt.models", "tprompt.experiments",
        "tprompt.evaluator", "tprompt.judge", "tprompt.judge.answers", "tprompt.export",
        "tprompt.telemetry")
FRONT_ENDS = ("textual", "typer", "tprompt.tui", "tprompt.cli", "tprompt.commands")


def _loaded_after_import(modules: tuple[str, ...]) -> list[str]:
    code = (
        "import importlib, json, sys\n"
        f"for name in {list(modules)!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_core_does_not_import_front_ends() -> None:
    loaded = _loaded_after_import(CORE)
    assert set(CORE) <= set(loaded)
    leaked = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in FRONT_ENDS)]
    assert leaked == []


def test_the_check_sees_a_front_end_import() -> None:
    # The same probe on the TUI finds Textual: the test above can fail.
    loaded = _loaded_after_import(("tprompt.tui",))
    assert "textual" in loaded and "tprompt.tui" in loaded


SQL = re.compile(r"\.execute(many|script)?\(|\b(SELECT|INSERT INTO|UPDATE|DELETE FROM|CREATE TABLE)\s+[\w(*]")


def sql_outside_stores(root: Path) -> list[str]:
    """``path:line`` of every SQL statement or execute call outside ``stores/`` (tests and benchmarks aside)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] in ("stores", "tests", "benchmarks", ".venv", "build") or rel.parts[0].startswith("."):
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if SQL.search(line):
                found.append(f"{rel}:{n}: {line.strip()}")
    return found


def test_sql_lives_only_in_stores() -> None:
    assert sql_outside_stores(ROOT) == []


def test_the_sql_check_sees_sql(tmp_path: Path) -> None:
    (tmp_path / "tui").mkdir()
    (tmp_path / "tui" / "data.py").write_text('rows = log.conn.execute("SELECT count(*) FROM runs")\n')
    assert sql_outside_stores(tmp_path) == ['tui/data.py:1: rows = log.conn.execute("SELECT count(*) FROM runs")']


#: Attributes holding a store's connection, its lock or its sqlite-utils ``Database``.
CONNECTION_ATTRS = frozenset({"conn", "_conn", "connection", "db", "_db", "_lock"})
DRIVERS = ("sqlite3", "sqlite_utils")


def _outside_stores(root: Path) -> list[tuple[Path, Path]]:
    files = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] in ("stores", "tests", "benchmarks", ".venv", "build") or rel.parts[0].startswith("."):
            continue
        files.append((path, rel))
    return files


def _connection_uses(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in CONNECTION_ATTRS:
            # An object's own private lock (``self._lock`` of a model's thread pool) is its own business.
            own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls") and node.attr.startswith("_")
            if not own:
                found.append((node.lineno, f".{node.attr}"))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
              and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and node.args[1].value in CONNECTION_ATTRS):
            found.append((node.lineno, f"getattr {node.args[1].value!r}"))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, f"import {a.name}") for a in node.names if a.name.split(".")[0] in DRIVERS)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] in DRIVERS:
            found.append((node.lineno, f"from {node.module} import"))
    return sorted(found)


def connection_uses_outside_stores(root: Path) -> list[str]:
    """``path:line: what`` of every touch of a connection, a store's lock or the SQLite driver outside ``stores/``.

    Attribute access, not text: ``log.conn``, ``log._lock``, ``log.db`` (the
    sqlite-utils ``Database``), ``getattr(log, "conn")``, ``import sqlite3``.
    """
    return [f"{rel}:{line}: {what}" for path, rel in _outside_stores(root)
            for line, what in _connection_uses(ast.parse(path.read_text(), str(rel)))]


def test_only_stores_touch_a_connection() -> None:
    assert connection_uses_outside_stores(ROOT) == []


def test_the_connection_check_sees_attribute_access(tmp_path: Path) -> None:
    (tmp_path / "tui").mkdir()
    (tmp_path / "tui" / "data.py").write_text(
        "import sqlite3\n"
        "from sqlite_utils import Database\n"
        "with app.store._lock:\n"
        "    rows = TranscriptStore(log.conn).spend([run_id])\n"
        "store = TranscriptStore(log.db)\n"
        "lock = getattr(log, '_lock')\n"
        "path = settings.db_path  # not a connection\n"
        "with self._lock:  # the object's own lock\n"
        "    pass\n"
    )
    # No SQL text in it: the SQL check alone would pass this file.
    assert sql_outside_stores(tmp_path) == []
    assert connection_uses_outside_stores(tmp_path) == [
        "tui/data.py:1: import sqlite3",
        "tui/data.py:2: from sqlite_utils import",
        "tui/data.py:3: ._lock",
        "tui/data.py:4: .conn",
        "tui/data.py:5: .db",
        "tui/data.py:6: getattr '_lock'",
    ]
