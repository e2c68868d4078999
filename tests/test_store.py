"""The event log's contract, run on ":memory:" and on a file (the ``log`` fixture)."""

from __future__ import annotations

import sqlite3

import pytest

from tprompt.config import RunConfig
from tprompt.errors import ConflictError, SeqOutOfRange, UnknownRun
from tprompt.stores import (
    CandidateScored,
    EventLog,
    RunPaused,
    RunResumed,
    StageStarted,
    StepCompleted,
    apply,
    fold,
)
from tprompt.stores._schema import APPLICATION_ID, MIGRATIONS


def scored(step: int, objective: float, prompt: str = "p-1") -> CandidateScored:
    return CandidateScored(
        stage="source",
        step=step,
        prompt_id=prompt,
        text=f"prompt {prompt}",
        task="source",
        n_examples=4,
        metrics={"accuracy": objective},
        objective=objective,
        scorer_calls=4,
    )


def seqs(log: EventLog, run_id: str) -> list[int]:
    return [e.seq for e in log.events(run_id)]


def test_schema_is_current_and_marked(log: EventLog) -> None:
    assert log._conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert log._conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID


def test_create_run_writes_seq_1_and_a_runs_row(log: EventLog, new_run) -> None:
    run_id = new_run(log, "first", scorer="fake")
    (event,) = log.events(run_id)
    assert (event.seq, event.type, event.run_id) == (1, "run.created", run_id)
    row = log.run(run_id)
    assert (row.status, row.name, row.parent_run_id) == ("created", "first", None)
    state = log.state(run_id)
    assert state.config == RunConfig.model_validate({"scorer": "fake"}) and state.status == "created" and state.last_seq == 1


def test_create_run_twice_with_same_ids_is_a_no_op(log: EventLog) -> None:
    from conftest import run_created

    first = log.create_run(run_created(), run_id="r-same")
    again = log.create_run(run_created(), run_id="r-same")
    assert first == again == "r-same"
    assert seqs(log, "r-same") == [1]
    assert len(log.runs()) == 1


def test_append_assigns_gapless_seqs_in_order(log: EventLog, new_run) -> None:
    run_id = new_run(log)
    written = log.append(run_id, [StageStarted(stage="source", tasks=["source"]), scored(1, 0.5)])
    assert [e.seq for e in written] == [2, 3]
    written = log.append(run_id, [scored(1, 0.6), StepCompleted(stage="source", step=1, best_prompt_id="p-1", best_objective=0.6)])
    assert [e.seq for e in written] == [4, 5]
    stored = list(log.events(run_id))
    assert [e.seq for e in stored] == [1, 2, 3, 4, 5]
    assert [e.type for e in stored] == ["run.created", "stage.started", "candidate.scored", "candidate.scored", "step.completed"]
    assert stored[2].event == scored(1, 0.5)
    assert log.last_seq(run_id) == 5


def test_expected_seq_mismatch_raises_conflict_and_writes_nothing(log: EventLog, new_run) -> None:
    run_id = new_run(log)
    log.append(run_id, [RunPaused()], expected_seq=2)
    with pytest.raises(ConflictError) as info:
        log.append(run_id, [RunResumed(), RunPaused()], expected_seq=2)
    assert info.value.run_id == run_id and info.value.seq == 2
    assert "expected to write seq 2" in str(info.value)
    assert seqs(log, run_id) == [1, 2]
    assert log.append(run_id, [RunResumed()], expected_seq=3)[0].seq == 3


def test_same_event_id_twice_leaves_one(log: EventLog, new_run) -> None:
    run_id = new_run(log)
    first = log.append(run_id, [RunPaused()], event_ids=["pause-1"])
    again = log.append(run_id, [RunPaused()], event_ids=["pause-1"])
    assert len(first) == 1 and again == []
    # A retried batch that partly got through writes only the missing part.
    both = log.append(run_id, [RunPaused(), RunResumed()], event_ids=["pause-1", "resume-1"])
    assert [(e.seq, e.event_id) for e in both] == [(3, "resume-1")]
    assert seqs(log, run_id) == [1, 2, 3]


def test_duplicate_append_with_stale_expected_seq_is_still_a_no_op(log: EventLog, new_run) -> None:
    # A writer retrying after a crash re-sends its last batch with the old expected seq.
    run_id = new_run(log)
    log.append(run_id, [RunPaused()], expected_seq=2, event_ids=["e2"])
    assert log.append(run_id, [RunPaused()], expected_seq=2, event_ids=["e2"]) == []


def test_append_rejects_bad_arguments(log: EventLog, new_run) -> None:
    run_id = new_run(log)
    with pytest.raises(ValueError):
        log.append(run_id, [RunPaused()], event_ids=["a", "b"])
    with pytest.raises(ValueError):
        log.append(run_id, [RunPaused(), RunResumed()], event_ids=["a", "a"])
    with pytest.raises(UnknownRun):
        log.append("r-nope", [RunPaused()])
    assert seqs(log, run_id) == [1]


def test_status_column_follows_events(log: EventLog, new_run) -> None:
    run_id = new_run(log)
    log.append(run_id, [StageStarted(stage="source", tasks=["source"])])
    assert log.run(run_id).status == "running"
    log.append(run_id, [scored(1, 0.1), RunPaused(reason="user")])
    assert log.run(run_id).status == "paused"
    assert log.state(run_id).status == "paused"


def test_resolve_accepts_unique_prefixes_only(log: EventLog) -> None:
    from conftest import run_created

    log.create_run(run_created(), run_id="r-abc1")
    log.create_run(run_created(), run_id="r-abc2")
    log.create_run(run_created(), run_id="r-x_y")
    assert log.resolve("r-abc1") == "r-abc1"
    assert log.resolve("r-x") == "r-x_y"
    with pytest.raises(UnknownRun, match="matches several runs"):
        log.resolve("r-abc")
    with pytest.raises(UnknownRun, match="no run"):
        log.resolve("r-zzz")
    # LIKE wildcards in the input are literal characters.
    with pytest.raises(UnknownRun):
        log.resolve("r-_bc")
    with pytest.raises(UnknownRun):
        log.resolve("%")


def test_state_at_any_seq_and_out_of_range(log: EventLog, new_run) -> None:
    run_id = new_run(log)
    log.append(run_id, [StageStarted(stage="source", tasks=["source"]), scored(1, 0.2), scored(1, 0.7, "p-2")])
    assert log.state(run_id, upto=1).status == "created"
    assert log.state(run_id, upto=2).status == "running"
    assert [s.objective for s in log.state(run_id, upto=3).scores] == [0.2]
    assert log.state(run_id).best("source").prompt_id == "p-2"
    for bad in (0, 5, -1):
        with pytest.raises(SeqOutOfRange) as info:
            log.state(run_id, upto=bad)
        assert info.value.run_id == run_id and info.value.seq == bad


def test_apply_one_by_one_equals_fold(log: EventLog, new_run) -> None:
    run_id = new_run(log)
    log.append(run_id, [StageStarted(stage="source", tasks=["source"]), scored(1, 0.2), RunPaused()])
    events = list(log.events(run_id))
    state = fold([], run_id=run_id)
    for event in events:
        state = apply(state, event)
    assert state == fold(events, run_id=run_id) == log.state(run_id)


def test_fork_reads_parent_prefix_through_and_continues_seqs(log: EventLog, new_run) -> None:
    parent = new_run(log, scorer="a")
    log.append(parent, [StageStarted(stage="source", tasks=["source"]), scored(1, 0.3), scored(1, 0.4)])
    child = log.fork(parent, 3, config=RunConfig.model_validate({"scorer": "b"}), target_task="other")
    log.append(parent, [scored(1, 0.9)])  # after the fork point: not the child's
    log.append(child, [scored(1, 0.5, "p-9")], expected_seq=5)

    history = list(log.events(child))
    assert [(e.run_id, e.seq) for e in history] == [(parent, 1), (parent, 2), (parent, 3), (child, 4), (child, 5)]
    parent_prefix = [e.model_dump() for e in log.events(parent, upto=3)]
    assert [e.model_dump() for e in history[:3]] == parent_prefix
    state = log.state(child)
    assert state.parent_run_id == parent and state.parent_seq == 3
    assert state.config == RunConfig.model_validate({"scorer": "b"}) and state.target_task == "other"
    assert [s.objective for s in state.scores] == [0.3, 0.5]
    # Nothing was copied: the child's own rows are its fork event and its append.
    own = log._conn.execute("SELECT count(*) FROM events WHERE run_id = ?", (child,)).fetchone()[0]
    assert own == 2
    row = log.run(child)
    assert (row.parent_run_id, row.parent_seq) == (parent, 3)


def test_fork_of_fork(log: EventLog, new_run) -> None:
    root = new_run(log)
    log.append(root, [RunPaused(), RunResumed(), RunPaused()])  # 2..4
    mid = log.fork(root, 3, config={}, target_task="t1")  # own: 4
    log.append(mid, [RunResumed(), RunPaused()])  # 5, 6
    leaf = log.fork(mid, 5, config={}, target_task="t2")  # own: 6
    assert [(e.run_id, e.seq) for e in log.events(leaf)] == [(root, 1), (root, 2), (root, 3), (mid, 4), (mid, 5), (leaf, 6)]
    assert [s.run_id for s in log.lineage(leaf)] == [root, mid, leaf]
    assert log.state(leaf).target_task == "t2"
    assert log.state(leaf, upto=4).target_task == "t1"
    # A fork exactly at a fork event, and at seq 1.
    assert log.last_seq(log.fork(leaf, 6, config={}, target_task="t3")) == 7
    assert seqs(log, log.fork(leaf, 1, config={}, target_task="t4")) == [1, 2]


def test_fork_errors_write_nothing(log: EventLog, new_run) -> None:
    parent = new_run(log)
    for bad in (0, 2):
        with pytest.raises(SeqOutOfRange):
            log.fork(parent, bad, config={}, target_task="x")
    with pytest.raises(UnknownRun):
        log.fork("r-missing", 1, config={}, target_task="x")
    assert [r.run_id for r in log.runs()] == [parent]
    assert log._conn.execute("SELECT count(*) FROM events").fetchone()[0] == 1


def test_events_window(log: EventLog, new_run) -> None:
    run_id = new_run(log)
    log.append(run_id, [RunPaused(), RunResumed(), RunPaused(), RunResumed()])
    assert [e.seq for e in log.events(run_id, after=2)] == [3, 4, 5]
    assert [e.seq for e in log.events(run_id, after=1, upto=3)] == [2, 3]
    assert list(log.events(run_id, after=3, upto=3)) == []


def test_events_are_immutable_even_for_raw_sql(log: EventLog, new_run) -> None:
    run_id = new_run(log)
    with pytest.raises(sqlite3.DatabaseError, match="immutable"):
        log._conn.execute("UPDATE events SET payload = '{}' WHERE run_id = ?", (run_id,))
    with pytest.raises(sqlite3.DatabaseError, match="immutable"):
        log._conn.execute("DELETE FROM events")
    assert seqs(log, run_id) == [1]


def test_file_log_reopens_with_the_same_history(db_path, new_run) -> None:
    with EventLog(db_path) as log:
        run_id = new_run(log)
        log.append(run_id, [StageStarted(stage="source", tasks=["source"]), scored(1, 0.25)])
        before = log.state(run_id)
    assert EventLog(db_path)._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with EventLog(db_path, readonly=True) as again:
        assert again.state(run_id) == before
