"""Run leases: one process executes a run at a time.

The process that runs, resumes or continues a run first takes the run's lease:
a row in ``run_leases`` written in one ``BEGIN IMMEDIATE`` transaction, so two
processes cannot both take it. The row names the holder (pid, host, start
time); it is deleted when the holder is done (completed, paused or failed). A
lease whose holder died (kill -9, power loss) is taken over by the next
process, which checks on this host that the pid is gone or now belongs to a
process started at another time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import RunBusy
from .db import now_iso
from .holder import Holder, holder_alive, process_start
from .log import EventLog


def lease_holder(log: EventLog, run_id: str) -> Holder | None:
    """Who holds ``run_id``'s lease now (alive or not), if anyone."""
    with log.store.reading() as conn:
        row = conn.execute("SELECT pid, host, started FROM run_leases WHERE run_id = ?", (run_id,)).fetchone()
    return Holder(int(row[0]), str(row[1]), str(row[2])) if row else None


def acquire(log: EventLog, run_id: str, me: Holder | None = None, *, force: bool = False) -> bool:
    """Take ``run_id``'s lease for this process.

    ``force`` takes over a lease held on another host, whose process this host
    cannot check: safe only when that process is gone (its machine or
    container stopped). A live holder on this host is never taken over.

    Returns:
        True if taken now, False if this process already held it.

    Raises:
        RunBusy: a live process holds it (on another host: unless ``force``).
    """
    me = me or Holder.me()
    with log.store.writing() as conn:
        held = lease_holder(log, run_id)  # the lock is re-entrant: read inside this transaction
        if held == me:
            return False
        if held is not None and holder_alive(held) and not (force and held.host != me.host):
            raise _busy(run_id, held, me)
        conn.execute(
            "INSERT OR REPLACE INTO run_leases (run_id, pid, host, started, acquired_at) VALUES (?, ?, ?, ?, ?)",
            (run_id, me.pid, me.host, me.started, now_iso()),
        )
    return True


def _busy(run_id: str, held: Holder, me: Holder) -> RunBusy:
    if held.host == me.host:
        return RunBusy(f"run {run_id} is running in process {held.pid}",
                       hint=f"wait for it, or pause it with `tprompt pause {run_id}` and resume it here")
    return RunBusy(
        f"run {run_id} is running in process {held.pid} on {held.host}",
        hint=f"wait for it, or pause it with `tprompt pause {run_id}`; if that process is gone (its machine "
        f"stopped), take the run over with `tprompt resume {run_id} --force`",
    )


def release(log: EventLog, run_id: str, me: Holder | None = None) -> None:
    """Give up ``run_id``'s lease if this process holds it."""
    me = me or Holder.me()
    with log.store.writing() as conn:
        conn.execute(
            "DELETE FROM run_leases WHERE run_id = ? AND pid = ? AND host = ? AND started = ?",
            (run_id, me.pid, me.host, me.started),
        )


@contextmanager
def run_lease(log: EventLog, run_id: str, *, force: bool = False) -> Iterator[None]:
    """Hold ``run_id``'s lease for the block (re-entrant within one process); ``force`` as in :func:`acquire`."""
    taken = acquire(log, run_id, force=force)
    try:
        yield
    finally:
        if taken:
            release(log, run_id)


__all__ = ("Holder", "acquire", "holder_alive", "lease_holder", "process_start", "release", "run_lease")
