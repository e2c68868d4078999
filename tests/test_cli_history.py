"""`tprompt runs / events / replay / fork`: JSON output, and one clear line for every user error."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from conftest import run_created

from tprompt.config import RunConfig
from tprompt.stores import CandidateScored, EventLog, RunPaused, StageStarted


@pytest.fixture
def filled(db_path: Path) -> tuple[Path, str]:
    """A database with one run of 5 events."""
    with EventLog(db_path) as log:
        run = log.create_run(run_created("demo", scorer="fake"), run_id="r-demo123")
        log.append(
            run,
            [
                StageStarted(stage="source", tasks=["source"]),
                CandidateScored(stage="source", step=1, prompt_id="p-1", text="Think.", task="source",
                                n_examples=3, metrics={"accuracy": 0.5}, objective=0.5),
                CandidateScored(stage="source", step=1, prompt_id="p-2", text="Think hard.", task="source",
                                n_examples=3, metrics={"accuracy": 0.75}, objective=0.75),
                RunPaused(),
            ],
        )
    return db_path, run


def snapshot(path: Path) -> tuple[bytes, list[str]]:
    return path.read_bytes(), sorted(p.name for p in path.parent.iterdir())


def counts(path: Path) -> tuple[int, int]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return (
            conn.execute("SELECT count(*) FROM runs").fetchone()[0],
            conn.execute("SELECT count(*) FROM events").fetchone()[0],
        )
    finally:
        conn.close()


def assert_one_error_line(code: int, out: str, err: str, *, exit_code: int, says: str) -> None:
    assert code == exit_code, err
    assert out == ""
    line = err.strip()
    assert "\n" not in line and line.startswith("error:"), err
    assert says in line
    assert "Traceback" not in err


# -- data and JSON -------------------------------------------------------------------


def test_runs_events_replay_json(cli, filled) -> None:
    db, run = filled
    code, out, err = cli("--db", str(db), "runs", "--json")
    assert code == 0 and err == ""
    (row,) = json.loads(out)
    assert (row["run_id"], row["status"], row["events"], row["best_objective"]) == (run, "paused", 5, 0.75)

    code, out, err = cli("--db", str(db), "events", "r-demo", "--json")
    assert code == 0 and err == ""
    rows = json.loads(out)
    assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5]
    assert rows[2]["payload"]["objective"] == 0.5 and rows[2]["type"] == "candidate.scored"

    code, out, err = cli("--db", str(db), "replay", run, "--to", "3", "--json")
    assert code == 0 and err == ""
    state = json.loads(out)
    assert (state["last_seq"], state["status"]) == (3, "running")
    assert [s["prompt_id"] for s in state["history"]["source"]] == ["p-1"]


def test_tables_go_to_stdout(cli, filled) -> None:
    db, run = filled
    for args in (["runs"], ["events", run], ["replay", run]):
        code, out, err = cli("--db", str(db), *args)
        assert code == 0 and err == "" and run in out


def test_fork_prints_new_run_id_and_takes_parent_state(cli, filled) -> None:
    db, run = filled
    code, out, err = cli("--db", str(db), "fork", "r-demo", "--at", "3", "--no-start")
    assert code == 0 and err == ""
    child = out.strip()
    with EventLog(db, readonly=True) as log:
        state = log.state(child)
        assert (state.parent_run_id, state.parent_seq, state.last_seq) == (run, 3, 4)
        assert state.config == RunConfig.model_validate({"scorer": "fake"}) and state.target_task == "target"
        assert [s.prompt_id for s in state.scores] == ["p-1"]

    code, out, err = cli("--db", str(db), "fork", child, "--at", "4", "--no-start", "--json")
    assert code == 0 and err == ""
    made = json.loads(out)
    assert (made["parent_run_id"], made["parent_seq"]) == (child, 4)
    code, out, _ = cli("--db", str(db), "runs", "--json")
    assert {r["run_id"]: r["parent_run_id"] for r in json.loads(out)}[made["run_id"]] == child


def test_fork_run_function_overrides(filled) -> None:
    from tprompt.graph import fork_run

    db, _run = filled
    with EventLog(db) as log:
        child = fork_run(log, "r-demo", at_seq=2, overrides={"target_task": "medqa", "steps": 3}, validate=False)
        state = log.state(child)
    assert state.target_task == "medqa"
    assert state.config == RunConfig.model_validate({"scorer": "fake", "steps": 3, "target_task": "medqa"})


def test_runs_on_missing_database_is_empty(cli, tmp_path: Path) -> None:
    db = tmp_path / "none.db"
    assert cli("--db", str(db), "runs", "--json")[:2] == (0, "[]\n")
    assert not db.exists()


def test_every_command_has_help_with_an_example(cli) -> None:
    for command in ("runs", "events", "replay", "fork"):
        code, out, _ = cli(command, "--help")
        assert code == 0 and "Example: tprompt " + command in out


# -- user errors: one line, exit 1 or 2, nothing written ----------------------------------


@pytest.mark.parametrize(
    "args",
    [["events", "r-nope"], ["replay", "r-nope"], ["fork", "r-nope", "--at", "1", "--no-start"], ["events", "r-nope", "--json"]],
)
def test_unknown_run(cli, filled, args) -> None:
    db, _ = filled
    before = counts(db)
    assert_one_error_line(*cli("--db", str(db), *args), exit_code=2, says="no run 'r-nope'")
    assert counts(db) == before


@pytest.mark.parametrize("args", [["replay", "{run}", "--to", "6"], ["replay", "{run}", "--to", "0"],
                                  ["fork", "{run}", "--at", "99", "--no-start"], ["fork", "{run}", "--at", "0", "--no-start", "--json"]])
def test_seq_out_of_range(cli, filled, args) -> None:
    db, run = filled
    before = counts(db)
    args = [a.format(run=run) for a in args]
    assert_one_error_line(*cli("--db", str(db), *args), exit_code=2, says="1..5")
    assert counts(db) == before


def _text_file(path: Path) -> None:
    path.write_text("name,score\nalice,3\n" * 50)


def _other_app(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE contacts (name TEXT)")
    conn.commit()
    conn.close()


@pytest.mark.parametrize("make", [_text_file, _other_app], ids=["text", "other-sqlite"])
@pytest.mark.parametrize(
    "args", [["runs"], ["runs", "--json"], ["events", "r-1"], ["replay", "r-1"], ["fork", "r-1", "--at", "1", "--no-start"]]
)
def test_not_a_tprompt_database(cli, tmp_path: Path, make, args) -> None:
    db = tmp_path / "foreign.db"
    make(db)
    before = snapshot(db)
    assert_one_error_line(*cli("--db", str(db), *args), exit_code=1, says="not a tprompt")
    assert snapshot(db) == before


@pytest.mark.parametrize("args", [["events", "r-1"], ["replay", "r-1"], ["fork", "r-1", "--at", "1", "--no-start"]])
def test_missing_database(cli, tmp_path: Path, args) -> None:
    db = tmp_path / "missing.db"
    assert_one_error_line(*cli("--db", str(db), *args), exit_code=1, says="no tprompt database")
    assert list(tmp_path.iterdir()) == []


def test_corrupt_event_names_run_and_seq(cli, filled) -> None:
    db, run = filled
    conn = sqlite3.connect(db)
    conn.execute(
        "INSERT INTO events VALUES (?, 6, 'bad', 'run.paused', 1, '{oops', '2025-01-01T00:00:00+00:00')", (run,)
    )
    conn.commit()
    conn.close()
    assert_one_error_line(*cli("--db", str(db), "events", run), exit_code=1, says=f"run {run} seq 6")
    assert_one_error_line(*cli("--db", str(db), "replay", run, "--json"), exit_code=1, says=f"run {run} seq 6")
    assert cli("--db", str(db), "replay", run, "--to", "5", "--json")[0] == 0


def test_read_only_file_for_fork(cli, filled) -> None:
    db, run = filled
    db.chmod(0o444)
    before = snapshot(db)
    assert_one_error_line(*cli("--db", str(db), "fork", run, "--at", "2", "--no-start"), exit_code=1, says="read-only")
    assert snapshot(db) == before
    # Reading a read-only file is fine.
    assert cli("--db", str(db), "events", run, "--json")[0] == 0


def test_locked_database(cli, filled, monkeypatch: pytest.MonkeyPatch) -> None:
    db, run = filled
    monkeypatch.setenv("TPROMPT_BUSY_TIMEOUT", "0.2")
    before = counts(db)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        assert_one_error_line(*cli("--db", str(db), "fork", run, "--at", "2", "--no-start", "--json"), exit_code=1, says="locked")
        # WAL: readers are not blocked by a writer.
        code, out, _ = cli("--db", str(db), "events", run, "--json")
        assert code == 0 and len(json.loads(out)) == 5
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert counts(db) == before
    assert cli("--db", str(db), "fork", run, "--at", "2", "--no-start")[0] == 0


def test_bad_busy_timeout_env(cli, filled, monkeypatch: pytest.MonkeyPatch) -> None:
    db, run = filled
    monkeypatch.setenv("TPROMPT_BUSY_TIMEOUT", "soon")
    assert_one_error_line(*cli("--db", str(db), "fork", run, "--at", "2", "--no-start"), exit_code=1, says="TPROMPT_BUSY_TIMEOUT")
