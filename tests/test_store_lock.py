"""One database object, one connection, one lock: every statement on the connection runs under the lock.

The event log, the transcripts (also a recorder's on an in-memory log), leases,
control requests and experiments share a :class:`~tprompt.stores.Store`; a
statement run without its lock could interleave with another thread's
transaction on the same connection.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import run_created

from tprompt.errors import StoreError
from tprompt.models import ChatRequest, Recorder
from tprompt.models.fake import FakeBackend
from tprompt.stores import EventLog, StepCompleted, Store, experiments
from tprompt.stores.control import mark_handled, pause_requested, request_pause
from tprompt.stores.leases import acquire, lease_holder, release, run_lease


class WatchedConnection:
    """A connection that notes every statement run while the store's lock is not held by the caller."""

    def __init__(self, conn: sqlite3.Connection, lock: Any) -> None:
        self._inner = conn
        self._store_lock = lock
        self.statements = 0
        self.unlocked: list[str] = []

    def _see(self, sql: str) -> None:
        self.statements += 1
        if not self._store_lock._is_owned():
            self.unlocked.append(" ".join(sql.split()[:4]))

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        self._see(sql)
        return self._inner.execute(sql, *args)

    def executemany(self, sql: str, *args: Any) -> sqlite3.Cursor:
        self._see(sql)
        return self._inner.executemany(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def watched_store() -> tuple[Store, WatchedConnection]:
    store = Store(":memory:")
    watched = WatchedConnection(store._conn, store._lock)
    store._conn = watched  # type: ignore[assignment]
    return store, watched


def test_every_part_of_the_store_runs_its_statements_under_the_one_lock() -> None:
    store, watched = watched_store()
    log = EventLog(store)
    run_id = log.create_run(run_created("locked"), run_id="r-lock")
    log.append(run_id, [StepCompleted(stage="source", step=1, best_prompt_id=None, best_objective=None)])
    log.fork(run_id, 2, config={}, target_task="t")
    log.state(run_id), log.runs(), log.summary_rows(), log.change_stamp()
    # leases
    assert acquire(log, run_id) is True
    assert lease_holder(log, run_id) is not None
    release(log, run_id)
    with run_lease(log, run_id):
        pass
    # control
    request_pause(log, run_id)
    assert pause_requested(log, run_id)
    mark_handled(log, run_id)
    assert not pause_requested(log, run_id)
    # experiments
    experiments.record(log, "grid", "{}")
    experiments.listed(log), experiments.matching(log, "grid"), experiments.root_runs_named(log, "locked")
    # transcripts, written by a recorder sharing the in-memory log's store
    Recorder(log, run_id=run_id).chat(
        FakeBackend("fake"), [ChatRequest(messages=(("user", "Which?\nA) x\nB) y"),))], agent="scorer", seq=1
    )
    rows = log.transcripts.rows([(run_id, 1, None)])
    assert len(rows) == 1
    log.transcripts.spend([run_id]), log.transcripts.call(rows[0].call_id), log.transcripts.body(rows[0].request_hash)
    assert watched.statements > 40  # the probe saw the traffic: the check below is not vacuous
    assert watched.unlocked == []


def test_the_probe_sees_a_statement_run_without_the_lock() -> None:
    # The check above can fail: a statement on the connection outside the lock is reported.
    store, watched = watched_store()
    store._conn.execute("SELECT 1")
    assert watched.unlocked == ["SELECT 1"]


def test_the_log_and_its_transcripts_share_one_store(tmp_path: Path) -> None:
    with EventLog(tmp_path / "one.db") as log:
        assert log.transcripts is log.transcripts and log.transcripts._store is log.store
    # A log given a store shares it and leaves it open when closed.
    store = Store(tmp_path / "one.db")
    EventLog(store).close()
    assert EventLog(store).runs() == []
    store.close()


def test_a_store_error_is_translated_and_chained(tmp_path: Path) -> None:
    store = Store(tmp_path / "t.db")
    with pytest.raises(StoreError) as info, store.reading() as conn:
        conn.execute("SELECT * FROM no_such_table")
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)
    store.close()


def test_a_readonly_store_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    with EventLog(path) as log:
        run_id = log.create_run(run_created("ro"))
    with Store(path, readonly=True) as ro:
        ro_log = EventLog(ro)
        assert ro.readonly and ro_log.readonly
        with pytest.raises(StoreError):
            request_pause(ro_log, run_id)
        assert not pause_requested(ro_log, run_id)


def test_backup_copies_the_database(tmp_path: Path) -> None:
    with EventLog(tmp_path / "a.db") as log:
        run_id = log.create_run(run_created("copied"))
        log.store.backup(tmp_path / "b.db")
    with EventLog(tmp_path / "b.db", readonly=True) as copy:
        assert [r.run_id for r in copy.runs()] == [run_id]
