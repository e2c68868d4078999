"""Many writers on one file: threads, processes, races on expected_seq, SIGKILL mid-append."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from conftest import run_created

from tprompt.errors import ConflictError
from tprompt.stores import EventLog, RunFailed, StoredEvent

WRITERS = 4
OWN_EVENTS = 40
ROUNDS = 15


def marker(writer: str, i: int) -> RunFailed:
    """An event that says who wrote it and in which order."""
    return RunFailed(error=f"{writer}:{i}")


def parse(e: StoredEvent) -> tuple[str, int]:
    writer, i = e.event.error.rsplit(":", 1)  # type: ignore[union-attr]
    return writer, int(i)


def write_and_race(path: str, writer: str, own_run: str, shared_run: str, barrier) -> dict[str, int]:
    """One writer's job (a thread's or a process's): its own run, then races on the shared one."""
    wins = conflicts = retries = 0
    with EventLog(path) as log:
        # Interleave own appends with unsynchronized appends to the shared run (retry on conflict).
        for i in range(OWN_EVENTS):
            log.append(own_run, [marker(writer, i)], expected_seq=i + 2)
            while True:
                try:
                    log.append(shared_run, [marker(writer, i)], expected_seq=log.last_seq(shared_run) + 1)
                    break
                except ConflictError:
                    retries += 1
        # Lock-step races: everyone writes the same seq at once; exactly one may win each round.
        for round_ in range(ROUNDS):
            barrier.wait()
            expected = 2 + WRITERS * OWN_EVENTS + round_
            try:
                log.append(shared_run, [marker(f"race-{writer}", round_)], expected_seq=expected)
                wins += 1
            except ConflictError as exc:
                assert exc.seq == expected
                conflicts += 1
    return {"wins": wins, "conflicts": conflicts, "retries": retries}


def make_runs(path: Path) -> tuple[list[str], str]:
    with EventLog(path) as log:
        own = [log.create_run(run_created(f"w{k}"), run_id=f"r-own{k}") for k in range(WRITERS)]
        shared = log.create_run(run_created("shared"), run_id="r-shared")
    return own, shared


def check_history(path: Path, own: list[str], shared: str, results: list[dict[str, int]]) -> None:
    """No lost, duplicated or reordered event; exactly one winner per race round."""
    with EventLog(path, readonly=True) as log:
        for k, run in enumerate(own):
            history = list(log.events(run))[1:]
            assert [e.seq for e in history] == list(range(2, OWN_EVENTS + 2))
            assert [parse(e) for e in history] == [(f"w{k}", i) for i in range(OWN_EVENTS)]
        history = list(log.events(shared))
        assert [e.seq for e in history] == list(range(1, 2 + WRITERS * OWN_EVENTS + ROUNDS))
        written = [parse(e) for e in history[1:]]
        assert len(set(written)) == len(written)
        free, races = written[: WRITERS * OWN_EVENTS], written[WRITERS * OWN_EVENTS :]
        for k in range(WRITERS):
            assert [i for w, i in free if w == f"w{k}"] == list(range(OWN_EVENTS))
        assert [i for _, i in races] == list(range(ROUNDS))
        assert log._conn.execute("SELECT count(*) FROM events").fetchone()[0] == len(history) + WRITERS * (OWN_EVENTS + 1)
        assert log._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert sum(r["wins"] for r in results) == ROUNDS
    assert sum(r["conflicts"] for r in results) == ROUNDS * (WRITERS - 1)


def test_threads_each_with_its_own_log(db_path: Path) -> None:
    own, shared = make_runs(db_path)
    barrier = threading.Barrier(WRITERS, timeout=60)
    results: list[dict[str, int]] = []
    failures: list[BaseException] = []

    def job(k: int) -> None:
        try:
            results.append(write_and_race(str(db_path), f"w{k}", own[k], shared, barrier))
        except BaseException as exc:  # surfaced below; a thread's exception is otherwise lost
            failures.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=job, args=(k,)) for k in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures, failures
    check_history(db_path, own, shared, results)


def test_one_log_shared_by_threads(tmp_path: Path) -> None:
    """An EventLog instance serializes its own use: sharing one across threads loses nothing."""
    with EventLog(tmp_path / "one.db") as log:
        run = log.create_run(run_created())

        def job(k: int) -> None:
            for i in range(50):
                log.append(run, [marker(f"t{k}", i)])

        threads = [threading.Thread(target=job, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        history = list(log.events(run))[1:]
        assert [e.seq for e in history] == list(range(2, 202))
        for k in range(4):
            assert [i for w, i in map(parse, history) if w == f"t{k}"] == list(range(50))


def _process_main(path: str, writer: str, own_run: str, shared_run: str, barrier, queue) -> None:
    try:
        queue.put(write_and_race(path, writer, own_run, shared_run, barrier))
    except BaseException as exc:
        queue.put({"error": repr(exc)})
        barrier.abort()


def test_processes_spawned(db_path: Path) -> None:
    own, shared = make_runs(db_path)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WRITERS, timeout=120)
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=_process_main, args=(str(db_path), f"w{k}", own[k], shared, barrier, queue))
        for k in range(WRITERS)
    ]
    for p in procs:
        p.start()
    results = [queue.get(timeout=180) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert not [r for r in results if "error" in r], results
    check_history(db_path, own, shared, results)


WRITER_SCRIPT = textwrap.dedent(
    """
    import sys
    from tprompt.stores import EventLog, RunFailed
    path, run, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
    log = EventLog(path)
    seq = log.last_seq(run)
    while True:
        events = [RunFailed(error=f"n:{seq + 1 + i}") for i in range(batch)]
        seq = log.append(run, events, expected_seq=seq + 1)[-1].seq
        # Reported only once the transaction has committed.
        sys.stdout.write(f"{seq}\\n")
        sys.stdout.flush()
    """
)


@pytest.mark.parametrize("batch,kill_after", [(1, 150), (25, 40)])
def test_sigkill_mid_append_keeps_every_committed_event(db_path: Path, batch: int, kill_after: int) -> None:
    with EventLog(db_path) as log:
        run = log.create_run(run_created(), run_id="r-victim")
        other = log.create_run(run_created(), run_id="r-bystander")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER_SCRIPT, str(db_path), run, str(batch)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    reported: list[int] = []
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    while len(reported) < kill_after and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        reported.append(int(line))
    # The writer is in its append loop: most of its time is spent inside a transaction.
    os.kill(proc.pid, signal.SIGKILL)
    rest, stderr = proc.communicate(timeout=30)
    reported += [int(line) for line in rest.split()]
    assert proc.returncode == -signal.SIGKILL
    assert len(reported) >= kill_after, stderr

    with EventLog(db_path) as log:  # opens (and recovers the WAL) without complaint
        assert log._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        history = list(log.events(run))
        seqs = [e.seq for e in history]
        assert seqs == list(range(1, len(seqs) + 1))
        assert set(reported) <= set(seqs)
        # Whole batches only: a transaction is all or nothing.
        assert (len(seqs) - 1) % batch == 0
        assert [e.event.error for e in history[1:]] == [f"n:{s}" for s in seqs[1:]]  # type: ignore[union-attr]
        assert [e.seq for e in log.events(other)] == [1]
        assert log.append(run, [RunFailed(error="after")], expected_seq=len(seqs) + 1)[0].seq == len(seqs) + 1
