"""Commands that only read start fast: they never import torch, transformers, LangGraph or
langchain (issue 12, item 7). Each command runs in a fresh interpreter on a real database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_graph import cli_args

HEAVY = ("torch", "transformers", "langgraph", "langchain", "langchain_core", "textual")

PROBE = """
import json, sys
from tprompt.cli import main
sys.argv = ["tprompt", *json.loads(sys.argv[1])]
try:
    main()
except SystemExit:
    pass
heavy = sorted({m.split('.')[0] for m in sys.modules} & set(%r))
print("HEAVY=" + json.dumps(heavy), file=sys.stderr)
"""


@pytest.mark.parametrize(
    "args",
    [
        ["--version"], ["--help"], ["runs"], ["runs", "--json"], ["events", "RUN"], ["show", "RUN"],
        ["show", "RUN", "--json"], ["replay", "RUN", "--to", "5"], ["transcript", "RUN"], ["tasks"],
        ["run", "--help"], ["pause", "RUN"], ["export", "RUN"], ["export", "RUN", "--format", "json"],
    ],
)
def test_reading_commands_import_no_model_or_graph_library(finished: tuple[Path, str], args: list[str]) -> None:
    db, run_id = finished
    argv = ["--db", str(db), *[run_id if a == "RUN" else a for a in args]]
    proc = subprocess.run([sys.executable, "-c", PROBE % (list(HEAVY),), json.dumps(argv)],
                          capture_output=True, text=True, timeout=300)
    line = [x for x in proc.stderr.splitlines() if x.startswith("HEAVY=")]
    assert line, proc.stderr
    assert json.loads(line[0][len("HEAVY="):]) == [], f"tprompt {' '.join(args)} imported them"


#: Everything of tprompt that `tprompt --version` may import: the CLI's shell, its error types and
#: text helpers. No command module, no store, no evaluator, no model code (issue 34).
VERSION_IMPORTS = ["tprompt", "tprompt._lazy", "tprompt._signals", "tprompt._text", "tprompt.cli", "tprompt.commands",
                   "tprompt.commands._common", "tprompt.errors"]

VERSION_PROBE = """
import json, sys
from tprompt.cli import main
sys.argv = ["tprompt", "--version"]
try:
    main()
except SystemExit:
    pass
print("IMPORTED=" + json.dumps(sorted(m for m in sys.modules if m == "tprompt" or m.startswith("tprompt."))), file=sys.stderr)
"""


def test_version_imports_only_the_cli_shell() -> None:
    proc = subprocess.run([sys.executable, "-c", VERSION_PROBE], capture_output=True, text=True, timeout=300)
    assert proc.stdout.startswith("tprompt "), proc.stdout + proc.stderr
    line = [x for x in proc.stderr.splitlines() if x.startswith("IMPORTED=")]
    assert line, proc.stderr
    assert json.loads(line[0][len("IMPORTED="):]) == VERSION_IMPORTS


OTEL_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def test_a_run_without_an_otlp_endpoint_imports_no_exporter(tmp_path: Path) -> None:
    """Issue 33: with no endpoint, a run loads neither tprompt.telemetry nor the OTLP exporter."""
    probe = (
        "import sys\nfrom tprompt.cli import main\n"
        f"sys.argv = ['tprompt', 'run', *{cli_args(steps=1)!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('LOADED=' + ','.join(sorted(m for m in sys.modules if m.startswith(('tprompt.telemetry', "
        "'opentelemetry.exporter')))), file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                          env={**{k: v for k, v in os.environ.items() if k not in OTEL_VARS}, "TPROMPT_DB": str(tmp_path / "t.db")})
    assert "LOADED=\n" in proc.stderr, proc.stderr[-2000:]


def test_each_command_is_added_by_the_module_the_cli_imports_for_it() -> None:
    import importlib

    import typer

    from tprompt import cli

    found = {}
    for module in cli.COMMAND_MODULES:
        app = typer.Typer()
        importlib.import_module(f"tprompt.commands.{module}").register(app)
        found.update({c.name or c.callback.__name__: module for c in app.registered_commands})  # type: ignore[union-attr]
    assert found == cli.COMMAND_OF


LISTING_PROBE = """
import json, sys
from tprompt.cli import main
sys.argv = ["tprompt", "--db", sys.argv[1], "runs"]
try:
    main()
except SystemExit:
    pass
print("IMPORTED=" + json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def test_runs_imports_neither_the_graph_nor_the_scorer_nor_pandas(finished: tuple[Path, str]) -> None:
    """b1c1fa2: `tprompt runs` imported every command module (the graph, the scorer, numpy) and sqlite-utils
    (which imports pandas where it is installed): 2-4 s on this machine, ~1 s without them (issue 34)."""
    db, _ = finished
    proc = subprocess.run([sys.executable, "-c", LISTING_PROBE, str(db)], capture_output=True, text=True, timeout=300)
    assert "runs in" in proc.stdout, proc.stdout + proc.stderr
    line = [x for x in proc.stderr.splitlines() if x.startswith("IMPORTED=")]
    assert line, proc.stderr
    imported = set(json.loads(line[0][len("IMPORTED="):]))
    assert not imported & {"tprompt.graph", "tprompt.agents", "tprompt.evaluator.scoring", "tprompt.evaluator.metrics",
                           "numpy", "pandas", "sqlite_utils"}
