"""The core never imports the front ends: stores, graph, agents and evaluator work without Textual or Typer."""

from __future__ import annotations

import json
import subprocess
import sys

CORE = ("tprompt.stores", "tprompt.graph", "tprompt.agents", "tprompt.evaluator")
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
