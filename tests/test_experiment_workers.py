"""``tprompt experiment --workers N``: cells in parallel processes on one database, the same result as one by one."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import kill_and_wait_for, needs_proc_and_pidfds, process_alive
from test_experiment import tprompt, write_toml

from tprompt.experiments.grid import load_experiment_file, plan_experiment
from tprompt.experiments.parallel import prepare_runs
from tprompt.graph import comparable_events
from tprompt.stores import EventLog
from tprompt.stores.leases import acquire, release

#: Four runs (two cells x two arms); the scorer's delay makes cells overlap.
GRID = {
    "name": "par",
    "models": [{"proposer": "fake", "scorer": "fake:delay=0.03"}],
    "sources": ["ai2_science"],
    "targets": ["arc_challenge", "mmlu/anatomy"],
    "seeds": [0],
    "run": {"steps": 2, "candidates": 2, "examples": 4, "test_examples": 8, "mode": "logprob"},
}

DEADLINE = 240  # seconds: a bound on waiting under load, not a wait for something to happen


def by_name(db: Path) -> dict[str, tuple[str, str, list]]:
    """``name -> (run id, status, comparable events)`` of every run in ``db``."""
    with EventLog(db, readonly=True) as log:
        return {r.name: (r.run_id, r.status, comparable_events(log, r.run_id)) for r in log.runs()}


@pytest.fixture(scope="module")
def sequential(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str, list]]:
    """The grid run one cell after another (``--workers 1``, today's behaviour)."""
    tmp = tmp_path_factory.mktemp("sequential")
    db = tmp / "seq.db"
    tprompt(db, "experiment", str(write_toml(tmp / "par.toml", GRID)), "--json")
    runs = by_name(db)
    assert len(runs) == 4 and {s for _, s, _ in runs.values()} == {"completed"}
    return runs


def start(db: Path, config: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "TPROMPT_DB": str(db)}
    return subprocess.Popen([sys.executable, "-m", "tprompt.cli", "experiment", str(config), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def leases_held(db: Path) -> int:
    """Runs whose lease is held right now (0 while the schema is not there yet)."""
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=10) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM run_leases").fetchone()[0])
    except sqlite3.OperationalError:  # the file exists before its schema does
        return 0


def wait_for_two_running(db: Path, proc: subprocess.Popen[str]) -> int:
    """Poll until two cells hold their leases at once; the most seen (the parent may finish first)."""
    most = 0
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline and proc.poll() is None and most < 2:
        most = max(most, leases_held(db))
        time.sleep(0.02)  # the poll step: the loop waits on the leases table, DEADLINE bounds a hang
    return most


def test_two_workers_give_the_sequential_result(sequential, tmp_path: Path) -> None:
    db = tmp_path / "par.db"
    proc = start(db, write_toml(tmp_path / "par.toml", GRID), "--workers", "2", "--json")
    try:
        most = wait_for_two_running(db, proc)
        stdout, stderr = proc.communicate(timeout=DEADLINE)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert most >= 2, "never saw two cells running at once"
    data = json.loads(stdout)
    assert data["completed"] == data["total"] == 4
    parallel = by_name(db)
    assert sorted(parallel) == sorted(sequential)
    for name, (_run_id, status, events) in parallel.items():
        assert status == sequential[name][1]
        assert events == sequential[name][2], f"{name}: events differ from the sequential run"
    assert leases_held(db) == 0
    with sqlite3.connect(db) as conn:
        # b1c1fa2: 4-9 of 252 calls were paid twice per grid, by two workers sending the same request at once.
        paid_twice = conn.execute("SELECT COUNT(*) FROM (SELECT cache_key FROM transcripts WHERE cache_hit = 0"
                                  " AND error IS NULL GROUP BY cache_key HAVING COUNT(*) > 1)").fetchone()[0]
        assert paid_twice == 0
        assert conn.execute("SELECT COUNT(*) FROM call_claims").fetchone()[0] == 0


def test_ctrl_c_pauses_every_cell_and_a_rerun_continues_them(sequential, tmp_path: Path) -> None:
    db = tmp_path / "int.db"
    config = write_toml(tmp_path / "par.toml", GRID)
    proc = start(db, config, "--workers", "2")
    try:
        assert wait_for_two_running(db, proc) >= 2, "the experiment ended before two cells ran at once"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=DEADLINE)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr  # paused, as `run` does
    assert "pausing every running cell" in stderr
    before = by_name(db)
    assert len(before) == 4  # every run was created up front
    statuses = sorted(s for _, s, _ in before.values())
    # Every cell that was running paused (none left 'running' by a killed child); those not
    # started yet are still just created. Two held leases a moment before the signal, so
    # normally two are paused; one may have completed in between on a busy machine.
    assert set(statuses) <= {"completed", "paused", "created"}, statuses
    assert statuses.count("paused") >= 1 and statuses.count("completed") <= 2, statuses
    assert leases_held(db) == 0
    assert f"continue with: tprompt --db {db} experiment" in stdout

    again = json.loads(tprompt(db, "experiment", str(config), "--workers", "2", "--json").stdout)
    assert again["completed"] == again["total"] == 4
    after = by_name(db)
    assert {n: r for n, (r, _, _) in after.items()} == {n: r for n, (r, _, _) in before.items()}  # none created twice
    for name, (_run_id, status, events) in after.items():
        assert status == "completed"
        assert events == sequential[name][2], f"{name}: the resumed run's events differ from the sequential run"


def test_a_failed_cell_is_reported_and_the_others_go_on(tmp_path: Path) -> None:
    db = tmp_path / "busy.db"
    config = write_toml(tmp_path / "par.toml", GRID)
    planned = plan_experiment(load_experiment_file(config), where=str(config))
    with EventLog(db) as log:
        _, runs = prepare_runs(log, planned)
        busy_name, busy = runs[1][0].name, runs[1][1]
        acquire(log, busy)  # this live process holds the lease: that cell's child cannot run it
    try:
        proc = tprompt(db, "experiment", str(config), "--workers", "2", check=False)
    finally:
        with EventLog(db) as log:
            release(log, busy)
    assert proc.returncode == 1
    assert f"failed: run {busy} is running in process {os.getpid()}" in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: 1 run(s) of the experiment failed") and busy_name in last
    runs_now = by_name(db)
    assert len(runs_now) == 4
    assert {n: s for n, (_, s, _) in runs_now.items() if n != busy_name} == {
        n: "completed" for n in runs_now if n != busy_name
    }
    assert runs_now[busy_name][1] == "created"  # untouched: a rerun runs it


@pytest.mark.parametrize("value", ["0", "-3"])
def test_workers_must_be_positive(tmp_path: Path, value: str) -> None:
    db = tmp_path / "none.db"
    proc = tprompt(db, "experiment", str(write_toml(tmp_path / "par.toml", GRID)), f"--workers={value}", check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --workers {value}: ")
    assert not db.exists()  # nothing written


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` right now (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # the process ended while we looked
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@needs_proc_and_pidfds
def test_kill_9_of_the_driver_pauses_its_children(tmp_path: Path) -> None:
    """b1c1fa2: the children of a kill -9'd `experiment --workers 2` went on as orphans (issue 32)."""
    db = tmp_path / "orphans.db"
    # Cells long enough (minutes, unpaused) that a child which goes on after the kill would not pause.
    slow = {**GRID, "models": [{"proposer": "fake", "scorer": "fake:delay=0.5"}],
            "run": {**GRID["run"], "steps": 6}}
    config = write_toml(tmp_path / "par.toml", slow)
    proc = start(db, config, "--workers", "2")
    try:
        assert wait_for_two_running(db, proc) >= 2, "the experiment ended before two cells ran at once"
        children = _children(proc.pid)
        assert len(children) == 2
        kill_and_wait_for(proc, children, DEADLINE)
    finally:
        proc.kill()
        for c in _children(proc.pid):
            os.kill(c, signal.SIGKILL)
    assert not any(process_alive(c) for c in children), "the driver's children outlived it"
    assert leases_held(db) == 0
    statuses = sorted(s for _, s, _ in by_name(db).values())
    # The two running cells paused (one may have been finishing its last step), the others were never started.
    # (A rerun continues paused cells: test_ctrl_c_pauses_every_cell_and_a_rerun_continues_them.)
    assert set(statuses) <= {"paused", "created", "completed"} and statuses.count("paused") >= 1, statuses
