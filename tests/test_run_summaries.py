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
