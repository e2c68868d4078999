"""Damaged, foreign or newer data: a clear error naming the run and seq, the rest still readable."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from conftest import run_created

from tprompt.errors import CorruptEvent, NotATPromptDatabase, ReadOnlyDatabase, SchemaTooNew
from tprompt.stores import UPCASTERS, EventLog, RunFailed, RunPaused


def raw_insert(log: EventLog, run_id: str, seq: int, type_: str, payload: str, schema_version: int = 1) -> None:
    """Write a row the way another program could, bypassing the library (triggers only stop UPDATE/DELETE)."""
    log._conn.execute(
        "INSERT INTO events (run_id, seq, event_id, type, schema_version, payload, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, '2025-01-01T00:00:00+00:00')",
        (run_id, seq, f"raw-{run_id}-{seq}", type_, schema_version, payload),
    )


BAD_ROWS = {
    "not json": ("run.paused", "{not json", 1, "payload is invalid"),
    "wrong fields": ("run.failed", json.dumps({"type": "run.failed", "oops": 1}), 1, "payload is invalid"),
    "type mismatch": ("run.paused", json.dumps({"type": "run.resumed"}), 1, "payload says"),
    "unknown type": ("run.teleported", json.dumps({"type": "run.teleported"}), 1, "unknown event type 'run.teleported'"),
    "newer schema": ("run.paused", json.dumps({"type": "run.paused", "reason": "x"}), 7, "schema version 7"),
    "old, no upcaster": ("run.paused", json.dumps({"type": "run.paused"}), 0, "no upcaster"),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_bad_row_names_run_and_seq_and_spares_other_runs(log: EventLog, case: str) -> None:
    type_, payload, version, message = BAD_ROWS[case]
    bad = log.create_run(run_created(), run_id="r-bad")
    good = log.create_run(run_created(), run_id="r-good")
    log.append(good, [RunPaused()])
    log.append(bad, [RunPaused()])
    raw_insert(log, bad, 3, type_, payload, version)
    log.append(bad, [RunPaused()])  # the log still appends after a damaged row

    with pytest.raises(CorruptEvent) as info:
        list(log.events(bad))
    assert (info.value.run_id, info.value.seq) == ("r-bad", 3)
    assert "run r-bad seq 3" in str(info.value) and message in str(info.value)
    with pytest.raises(CorruptEvent):
        log.state(bad)
    # Everything before the damage, and every other run, still reads.
    assert log.state(bad, upto=2).last_seq == 2
    assert [e.seq for e in log.events(bad, after=3)] == [4]
    assert [e.seq for e in log.events(good)] == [1, 2]
    assert log.state(good).status == "paused"
    # A fork taken before the damage does not read it; one taken after names the parent's row.
    early = log.fork(bad, 2, config={}, target_task="t")
    assert log.state(early).last_seq == 3
    late = log.fork(bad, 4, config={}, target_task="t")
    with pytest.raises(CorruptEvent) as info:
        log.state(late)
    assert (info.value.run_id, info.value.seq) == ("r-bad", 3)


def test_upcaster_brings_an_old_payload_up_to_date(log: EventLog, monkeypatch: pytest.MonkeyPatch) -> None:
    # Pretend version 0 of run.failed called its field "message" and had no "code".
    def v0_to_v1(data: dict) -> dict:
        data = dict(data)
        data["error"] = data.pop("message")
        return data

    monkeypatch.setitem(UPCASTERS, ("run.failed", 0), v0_to_v1)
    run = log.create_run(run_created())
    raw_insert(log, run, 2, "run.failed", json.dumps({"type": "run.failed", "message": "out of memory"}), 0)
    (old,) = log.events(run, after=1)
    assert old.event == RunFailed(error="out of memory")
    assert old.schema_version == 0  # the envelope still tells what is on disk
    assert log.state(run).error == "out of memory"
    # Without the upcaster the same row is a clear error, not a crash.
    monkeypatch.delitem(UPCASTERS, ("run.failed", 0))
    with pytest.raises(CorruptEvent, match="no upcaster for run.failed v0"):
        log.state(run)


def test_upcasters_chain_over_several_versions(log: EventLog, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RunFailed, "schema_version", 3)
    monkeypatch.setitem(UPCASTERS, ("run.failed", 1), lambda d: {**d, "v2": d["error"]})
    monkeypatch.setitem(UPCASTERS, ("run.failed", 2), lambda d: {"type": d["type"], "error": d["v2"] + "!"})
    run = log.create_run(run_created())
    raw_insert(log, run, 2, "run.failed", json.dumps({"type": "run.failed", "error": "boom"}), 1)
    assert log.state(run).error == "boom!"


def test_other_apps_sqlite_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.execute("INSERT INTO notes VALUES ('mine')")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    for readonly in (True, False):
        with pytest.raises(NotATPromptDatabase, match="not a tprompt"):
            EventLog(path, readonly=readonly)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.sqlite"]


def test_text_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("just some text, long enough to look like a header of something\n" * 20)
    before = path.read_bytes()
    for readonly in (True, False):
        with pytest.raises(NotATPromptDatabase):
            EventLog(path, readonly=readonly)
    assert path.read_bytes() == before


def test_newer_schema_is_refused(db_path: Path) -> None:
    EventLog(db_path).close()
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    for readonly in (True, False):
        with pytest.raises(SchemaTooNew, match="schema version 99"):
            EventLog(db_path, readonly=readonly)


def test_read_only_file_refuses_writers_but_serves_readers(db_path: Path) -> None:
    with EventLog(db_path) as log:
        run = log.create_run(run_created())
    db_path.chmod(0o444)
    before = db_path.read_bytes()
    with pytest.raises(ReadOnlyDatabase):
        EventLog(db_path)
    with EventLog(db_path, readonly=True) as reader:
        assert reader.state(run).status == "created"
        with pytest.raises(ReadOnlyDatabase):
            reader.append(run, [RunPaused()])
        with pytest.raises(ReadOnlyDatabase):
            reader.fork(run, 1, config={}, target_task="t")
    assert db_path.read_bytes() == before
