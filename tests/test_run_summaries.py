"""Run summaries: the row `tprompt runs` and the runs browser show, kept by the run's writer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_created

from tprompt.config import RunConfig
from tprompt.graph import Runner, create_run, make_config
from tprompt.stores import EventLog, RunPaused, StageStarted
from tprompt.stores.listing import run_summaries
from tprompt.stores.summary import summarize


def _finished_run(log: EventLog) -> str:
    cfg = dict(target_task="arc_challenge", transfer=False, proposer="fake", scorer="fake", steps=2, candidates=2,
               examples=3, test_examples=2, mode="generate")
    run_id = create_run(log, make_config(cfg))
    Runner(log, run_id).run()
    return run_id


def test_a_run_written_by_the_runner_is_listed_without_reading_its_events(tmp_path: Path, monkeypatch) -> None:
    with EventLog(tmp_path / "t.db") as log:
        run_id = _finished_run(log)
        expected = summarize(log.state(run_id), log.run(run_id).created_at)
        assert expected.best_objective is not None and expected.status == "completed"

        def no_reading(*args, **kwargs):
            raise AssertionError("listing runs read a run's events")

        monkeypatch.setattr(EventLog, "events", no_reading)
        assert run_summaries(log) == [expected]


def test_a_summary_behind_its_run_is_not_trusted(tmp_path: Path) -> None:
    with EventLog(tmp_path / "t.db") as log:
        run_id = _finished_run(log)
        log.append(run_id, [RunPaused(reason="user")])  # another writer, no summary
        (listed,) = run_summaries(log)
        assert listed.status == "paused" and listed.last_seq == log.last_seq(run_id)
        assert listed == summarize(log.state(run_id), log.run(run_id).created_at)
        # A fork has no summary of its own until it is run: it is folded through its parent.
        fork = log.fork(run_id, 5, config=RunConfig.model_validate({"scorer": "fake"}), target_task="arc_challenge")
        forked = {s.run_id: s for s in run_summaries(log)}[fork]
        assert forked == summarize(log.state(fork), log.run(fork).created_at)


def test_the_summary_is_written_with_the_events_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tprompt.stores.summary as summary

    with EventLog(tmp_path / "t.db") as log:
        run_id = log.create_run(run_created("a"), run_id="r-a")  # the store knows the run's state: it keeps its row

        def broken(state, created_at):  # type: ignore[no-untyped-def]
            raise RuntimeError("summary failed")

        monkeypatch.setattr(summary, "summarize", broken)
        with pytest.raises(RuntimeError):
            log.append(run_id, [StageStarted(stage="source", tasks=["source"])], expected_seq=2)
        assert log.last_seq(run_id) == 1  # the events went with it


def test_the_store_keeps_the_summary_of_every_append_it_can(tmp_path: Path) -> None:
    """No graph code: an append of the log's own (create, review, failure) keeps the row current."""
    with EventLog(tmp_path / "t.db") as log:
        run_id = log.create_run(run_created("a"), run_id="r-a")
        log.append(run_id, [StageStarted(stage="source", tasks=["source"])], expected_seq=2)
        ((_row, last, text),) = log.summary_rows()
        assert last == 2 and text is not None and json.loads(text)["status"] == "running"
    with EventLog(tmp_path / "t.db") as other:  # a log that never folded the run writes no row, and says so by its seq
        other.append(run_id, [RunPaused()], expected_seq=3)
        ((_row, last, text),) = other.summary_rows()
        assert last == 3 and text is None


def test_runs_reads_a_database_from_before_summaries(tmp_path: Path, cli_main=None) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    with EventLog(path) as log:
        run_id = _finished_run(log)
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE run_summaries")
    conn.execute("PRAGMA user_version = 5")
    conn.commit()
    conn.close()
    with EventLog(path, readonly=True) as log:
        (listed,) = run_summaries(log)
        assert listed.run_id == run_id and listed.status == "completed"


def test_runs_shows_each_runs_held_out_test_objective(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`tprompt runs`: the best target prompt's test objective (a "test" column), blank while a run has none."""
    from tprompt.cli import main

    db = tmp_path / "t.db"
    with EventLog(db) as log:
        done = _finished_run(log)
        state = log.state(done)
        untested = log.create_run(run_created("a"), run_id="r-untested")
    assert main(["--db", str(db), "runs", "--json"]) == 0
    rows = {r["run_id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[done]["test_objective"] == state.tested["best_target"].objective
    assert rows[done]["original_test_objective"] == state.tested["original"].objective
    assert rows[untested]["test_objective"] is None and rows[untested]["original_test_objective"] is None
    assert main(["--db", str(db), "runs"]) == 0
    table = capsys.readouterr().out
    assert " test " in table.splitlines()[2]  # the header row (after the title and the top border)
    line = next(line for line in table.splitlines() if done in line)
    assert f"{state.tested['best_target'].objective:.3f}" in line


def test_a_stored_summary_from_before_the_test_column_is_folded_again(tmp_path: Path) -> None:
    """A row written before ``test_objective`` existed is not trusted: the run is folded, and its test result shows."""
    import sqlite3

    path = tmp_path / "t.db"
    with EventLog(path) as log:
        run_id = _finished_run(log)
    conn = sqlite3.connect(path)
    (text,) = conn.execute("SELECT summary FROM run_summaries").fetchone()
    old = {k: v for k, v in json.loads(text).items() if k not in ("test_objective", "original_test_objective")}
    conn.execute("UPDATE run_summaries SET summary = ?", (json.dumps(old),))
    conn.commit()
    conn.close()
    with EventLog(path, readonly=True) as log:
        (listed,) = run_summaries(log)
        assert listed.test_objective is not None
        assert listed == summarize(log.state(run_id), log.run(run_id).created_at)
