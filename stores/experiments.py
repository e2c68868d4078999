"""The ``experiments`` table: a grid's config stored once under its name (migration 4)."""

from __future__ import annotations

import uuid

from .db import now_iso
from .log import EventLog


def record(log: EventLog, name: str, config_json: str) -> tuple[str, str]:
    """Store ``config_json`` under ``name`` unless an experiment of that name exists.

    Returns ``(experiment_id, stored config JSON)``: the new row's, or the existing one's
    (the caller compares the configs).
    """
    with log.store.writing() as conn:
        row = conn.execute("SELECT experiment_id, config FROM experiments WHERE name = ?", (name,)).fetchone()
        if row is not None:
            return row[0], row[1]
        exp_id = "x-" + uuid.uuid4().hex[:10]
        conn.execute(
            "INSERT INTO experiments (experiment_id, name, config, created_at) VALUES (?, ?, ?, ?)",
            (exp_id, name, config_json, now_iso()),
        )
        return exp_id, config_json


def listed(log: EventLog) -> list[tuple[str, str, str]]:
    """``(experiment_id, name, created_at)`` of every stored experiment, oldest first."""
    if not log.store.has_table("experiments"):
        return []
    with log.store.reading() as conn:
        return [tuple(r) for r in conn.execute(
            "SELECT experiment_id, name, created_at FROM experiments ORDER BY created_at")]


def matching(log: EventLog, ref: str) -> list[tuple[str, str]]:
    """``(experiment_id, config JSON)`` of the experiments named ``ref``, with id ``ref``, or (``x-...``) id prefix ``ref``."""
    if not log.store.has_table("experiments"):
        return []
    with log.store.reading() as conn:
        rows = conn.execute(
            "SELECT experiment_id, config FROM experiments WHERE name = ? OR experiment_id = ?", (ref, ref)
        ).fetchall()
        if not rows and ref.startswith("x-"):
            rows = conn.execute(
                "SELECT experiment_id, config FROM experiments WHERE experiment_id LIKE ?", (ref + "%",)
            ).fetchall()
    return [tuple(r) for r in rows]


def root_runs_named(log: EventLog, name: str) -> list[str]:
    """Ids of the runs (not forks) named ``name``, oldest first."""
    with log.store.reading() as conn:
        return [r[0] for r in conn.execute(
            "SELECT run_id FROM runs WHERE name = ? AND parent_run_id IS NULL ORDER BY created_at, run_id", (name,))]


__all__ = ("listed", "matching", "record", "root_runs_named")
