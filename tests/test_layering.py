"""The core never imports the front ends: stores, graph, agents, models, experiments and evaluator work
without Textual or Typer."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CORE = ("tprompt.config", "tprompt.stores", "tprompt.graph", "tprompt.agents", "tprompt.models", "tprompt.experiments",
        "tprompt.evaluator")
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
