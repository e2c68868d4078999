"""A run's resources are opened once per run by `fork` and `experiment` (issue 28): the metric resolver, the
task loader and `get_model` are called by `RunResources.open` alone, so counting them counts the opens."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from test_experiment import GRID, write_toml
from test_graph import run_in_process

import tprompt.graph.resources as resources
from tprompt.cli import app
from tprompt.stores import EventLog


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    counts: Counter[str] = Counter()
    for name in ("resolve_metrics", "load_task", "get_model"):
        real = getattr(resources, name)

        def counting(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            counts[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(resources, name, counting)
    return counts


def _cli(db: Path, *args: str) -> None:
    app(["--db", str(db), *args], standalone_mode=False)


def test_fork_opens_the_fork_once(tmp_path: Path, opened: Counter[str], capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "f.db"
    log, parent = run_in_process(db, steps=1, candidates=2)
    log.close()
    opened.clear()
    _cli(db, "fork", parent, "--json")
    # one open: its metric set resolved once, its two tasks loaded once each, one view of the one fake model
    assert opened == {"resolve_metrics": 1, "load_task": 2, "get_model": 1}
    assert json.loads(capsys.readouterr().out)["status"] == "completed"


def test_experiment_opens_each_cell_run_once(tmp_path: Path, opened: Counter[str],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "e.db"
    _cli(db, "experiment", str(write_toml(tmp_path / "grid.toml", GRID)), "--json")
    assert json.loads(capsys.readouterr().out)["completed"] == 8
    # 8 runs, one open each (it was 20: a preflight per combination, then create_run's and the runner's)
    assert opened["resolve_metrics"] == 8 and opened["get_model"] == 8
    assert opened["load_task"] == 4 * 2 + 4 * 1  # transfer runs load two tasks, target-only runs one
    with EventLog(db, readonly=True) as log:
        assert len(log.runs()) == 8


def test_a_run_holds_one_connection_to_its_file(tmp_path: Path) -> None:
    """The runner's recorder shares the log's connection: once the log closes, the file is whole on its own.

    The recorder used to open a second connection that nothing closed; SQLite merges the write-ahead log into the
    file when the last connection closes, so until garbage collection the file's bytes changed under a
    reader (`test_merge`'s "nothing written" digest failed in CI when the collector ran late)."""
    db = tmp_path / "one.db"
    log, run = run_in_process(db, steps=1, candidates=2)
    with log:
        assert log.state(run).status == "completed"
    wal = Path(f"{db}-wal")
    assert not wal.exists() or wal.stat().st_size == 0
