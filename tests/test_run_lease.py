"""One process runs a run at a time (issue 12, item 3): a lease taken atomically,
released on exit, taken over from a dead holder."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from test_graph import SMALL, killed_in_a_call, wait_for_row

from tprompt.errors import RunBusy
from tprompt.graph import Runner, create_run, make_config
from tprompt.stores import EventLog
from tprompt.stores.leases import Holder, acquire, lease_holder, release, run_lease


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_lease_take_release_and_take_over(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "l.db")
    me = Holder.me()
    assert acquire(log, "r-1") is True
    assert acquire(log, "r-1") is False  # re-entrant in the holder
    assert lease_holder(log, "r-1") == me
    other = Holder(os.getppid(), me.host, _start(os.getppid()))
    with pytest.raises(RunBusy, match=rf"run r-1 is running in process {me.pid}"):
        acquire(log, "r-1", other)
    release(log, "r-1")
    assert lease_holder(log, "r-1") is None
    # A dead holder's lease is taken over; so is one whose pid now belongs to a younger process.
    log._conn.execute("INSERT INTO run_leases VALUES ('r-2', ?, ?, '1', 'then')", (_dead_pid(), me.host))
    log._conn.execute("INSERT INTO run_leases VALUES ('r-3', ?, ?, '1', 'then')", (os.getpid(), me.host))
    log._conn.commit()
    assert acquire(log, "r-2") is True and acquire(log, "r-3") is True
    with run_lease(log, "r-4"):
        assert lease_holder(log, "r-4") == me
    assert lease_holder(log, "r-4") is None


def _start(pid: int) -> str:
    from tprompt.stores.leases import process_start

    return process_start(pid) or ""


def test_a_run_held_elsewhere_is_not_touched(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "b.db")
    run_id = create_run(log, make_config(SMALL))
    parent = Holder(os.getppid(), Holder.me().host, _start(os.getppid()))
    acquire(log, run_id, parent)  # the pytest runner's parent process is alive
    before = log.state(run_id).last_seq
    with pytest.raises(RunBusy):
        Runner(log, run_id).run()
    assert log.state(run_id).last_seq == before  # nothing was written
    release(log, run_id, parent)
    assert Runner(log, run_id).run().status == "completed"
    assert lease_holder(log, run_id) is None


def test_two_resumes_at_once_one_runs_the_other_says_why(tmp_path: Path) -> None:
    db, gate = tmp_path / "r.db", tmp_path / "gate"
    killed_in_a_call(db, gate)
    log = EventLog(db)
    (run,) = log.runs()
    run_id = run.run_id
    env = {**os.environ, "TPROMPT_DB": str(db)}
    first = subprocess.Popen([sys.executable, "-m", "tprompt.cli", "resume", run_id, "--json"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # The first resume holds the lease and waits at the gate for its first new model call.
        # (The killed run's lease is still there, naming a dead process, until it is taken over.)
        pid = first.pid
        wait_for_row(db, f"SELECT 1 FROM run_leases WHERE run_id = '{run_id}' AND pid = {pid}", first)
        wait_for_row(db, "SELECT 1 FROM events WHERE type = 'run.resumed'", first)
        second = subprocess.run([sys.executable, "-m", "tprompt.cli", "resume", run_id], env=env,
                                capture_output=True, text=True, timeout=300)
        gate.touch()
        stdout, stderr = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert second.returncode == 1, second.stderr
    assert len(second.stderr.strip().splitlines()) == 1, second.stderr
    assert f"run {run_id} is running in process {pid}" in second.stderr
    assert first.returncode == 0, stderr
    assert json.loads(stdout)["status"] == "completed"
    types = [e.type for e in log.events(run_id)]
    # The second wrote nothing: no run.resumed or run.failed of its own (see also the in-process test).
    assert "run.failed" not in types and types.count("run.resumed") == 1
    with sqlite3.connect(db) as conn:
        twice = conn.execute("SELECT cache_key FROM transcripts WHERE cache_hit = 0 AND error IS NULL"
                             " GROUP BY cache_key HAVING count(*) > 1").fetchall()
        assert conn.execute("SELECT count(*) FROM run_leases").fetchone()[0] == 0  # released on exit
    assert twice == []
