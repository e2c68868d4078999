"""A run's resources are opened once per run by `run`, `fork`, `experiment` and the UI (issue 28): the metric
resolver, the task loader and `get_model` are called by `RunResources.open` alone, so counting them counts the
opens."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from _tui_db import DEMO_RUN
from test_experiment import GRID, write_toml
from test_graph import SMALL, run_in_process
from test_own_task_cli import write_dates
from test_tui import SIZE, fork_best_source_prompt, fork_onto, wait_for
from test_tui_result import _fill_new_run
from textual.widgets import Select

import tprompt.graph.resources as resources
from tprompt.cli import app
from tprompt.graph import Runner, make_config
from tprompt.graph import open_run as open_new_run
from tprompt.graph.resources import RunResources
from tprompt.stores import EventLog
from tprompt.tui import create_app
from tprompt.tui.screens.run import RunScreen

ONE_OPEN = {"resolve_metrics": 1, "load_task": 1, "get_model": 1}  # one task, one fake model


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


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


@pytest.mark.parametrize("given", ["relative", "absolute"])
def test_run_on_a_task_file_opens_it_once(tmp_path: Path, opened: Counter[str], given: str,
                                          monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """was 2/2/2: the run records its task file by absolute path (and its hash), so the runner found the resources
    `tprompt run` opened were for another config, and opened them again."""
    monkeypatch.chdir(tmp_path)
    dates = write_dates(tmp_path / "dates.jsonl")
    _cli(tmp_path / "t.db", "run", "--target", "dates.jsonl" if given == "relative" else str(dates), "--model", "fake",
         "--steps", "1", "--candidates", "2", "--examples", "4", "--test-examples", "4", "--json")
    assert opened == ONE_OPEN
    assert json.loads(capsys.readouterr().out)["status"] == "completed"
    with EventLog(tmp_path / "t.db", readonly=True) as log:
        (run,) = log.runs()
        assert log.state(run.run_id).target_task == str(dates.resolve())


def test_new_run_resources_are_the_recorded_run_s(tmp_path: Path, opened: Counter[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """`open_run` hands back the resources as the run recorded them: the task named by its absolute path, the same
    model views and pause flag; a runner on them opens nothing, one on resources of another config reopens."""
    monkeypatch.chdir(tmp_path)
    dates = write_dates(tmp_path / "dates.jsonl").resolve()
    config = make_config({**SMALL, "source_tasks": [], "transfer": False, "target_task": "dates.jsonl"})
    given = RunResources.open(config)
    with EventLog(tmp_path / "t.db") as log:
        run_id, rebound = open_new_run(log, config, resources=given)
        recorded = log.state(run_id).config
        assert recorded is not None and rebound.matches(recorded) and not given.matches(recorded)
        assert list(rebound.tasks) == [str(dates)] and rebound.task(str(dates)).name == str(dates)
        assert rebound.scorer is given.scorer and rebound.pause is given.pause
        assert opened == ONE_OPEN
        Runner(log, run_id, resources=rebound)
        assert opened == ONE_OPEN
        other = RunResources.open(config.model_copy(update={"seed": config.seed + 1}))
        opened.clear()
        runner = Runner(log, run_id, resources=other)  # a genuinely different config: opened again, as recorded
        assert opened == ONE_OPEN and runner.config.seed == recorded.seed and runner.resources is not other
    with pytest.raises(ValueError, match="not the one these resources were opened for"):
        given.recorded_as(recorded.model_copy(update={"seed": config.seed + 1}))


@pytest.mark.anyio
async def test_ui_fork_runs_on_the_resources_it_checked(recorded: Path, opened: Counter[str]) -> None:
    """was 2 opens: the fork worker checked the fork (opened it), then its runner opened it again."""
    app = create_app(recorded, cursor_blink=False, poll_interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        modal = await fork_best_source_prompt(pilot, app, DEMO_RUN)
        opened.clear()
        new_id = await fork_onto(pilot, app, modal, "bbh/causal_judgement")
    with EventLog(recorded, readonly=True) as log:
        state = log.state(new_id)
    assert state.status == "completed" and state.config is not None
    tasks = {*state.config.source_tasks, state.config.target_task}
    assert opened == {"resolve_metrics": 1, "load_task": len(tasks), "get_model": 1}


@pytest.mark.anyio
async def test_ui_new_run_opens_its_resources_once(db_path: Path, opened: Counter[str]) -> None:
    """was 3 opens: the form's check, `create_run`, then the runner."""
    app = create_app(db_path, cursor_blink=False, poll_interval=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        form = await _fill_new_run(pilot, app, {"source_tasks": "", "target_task": "bbh/web_of_lies", "proposer": "fake",
                                               "scorer": "fake", "steps": "1", "candidates": "2", "examples": "3",
                                               "test_examples": "3"}, target_only=False)
        form.query_one("#new-mode", Select).value = "generate"
        await pilot.pause()
        await pilot.click("#new-ok")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
        screen = app.screen
        await wait_for(pilot, lambda: screen.follower.state.status == "completed")
        await app.workers.wait_for_complete()
    assert opened == ONE_OPEN


def test_resources_of_a_paused_execution_run_the_next_one(tmp_path: Path) -> None:
    """A new Runner on resources an earlier execution paused is a fresh start: it runs (it used to pause at once and
    do nothing, as the pause flag lives in the resources and stayed up)."""
    config = make_config({**SMALL, "steps": 1, "candidates": 2})
    with EventLog(tmp_path / "p.db") as log:
        run_id, res = open_new_run(log, config)
        checks = iter(range(100))
        assert Runner(log, run_id, resources=res, pause_check=lambda: next(checks) >= 1).run().status == "paused"
        assert res.pause.is_set()
        assert Runner(log, run_id, resources=res).run().status == "completed"
