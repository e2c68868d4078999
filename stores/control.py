"""Requests to a run from another process: ``tprompt pause RUN`` while it runs.

A request is a row in ``run_requests``; the process running the run polls for
open requests between pieces of work, appends ``run.paused`` itself (so the
run's events keep a single writer) and marks the request handled.
"""

from __future__ import annotations

from .db import now_iso
from .log import EventLog


def request_pause(log: EventLog, run_id: str) -> None:
    """Ask the process running ``run_id`` to pause it at the next safe point."""
    run_id = log.resolve(run_id)
    with log.store.writing() as conn:
        conn.execute(
            "INSERT INTO run_requests (run_id, kind, created_at) VALUES (?, 'pause', ?)", (run_id, now_iso())
        )


def pause_requested(log: EventLog, run_id: str) -> bool:
    """True if an unhandled pause request for ``run_id`` exists."""
    with log.store.reading() as conn:
        row = conn.execute(
            "SELECT 1 FROM run_requests WHERE run_id = ? AND kind = 'pause' AND handled_at IS NULL LIMIT 1", (run_id,)
        ).fetchone()
    return row is not None


def mark_handled(log: EventLog, run_id: str) -> None:
    """Close every open request of ``run_id`` (after pausing, or when resuming)."""
    with log.store.writing() as conn:
        conn.execute(
            "UPDATE run_requests SET handled_at = ? WHERE run_id = ? AND handled_at IS NULL", (now_iso(), run_id)
        )


__all__ = ("mark_handled", "pause_requested", "request_pause")
