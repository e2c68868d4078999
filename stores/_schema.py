"""Schema of the tprompt database and its migrations (``PRAGMA user_version``).

Each migration is a function run once, in order, inside one transaction; the
database's ``user_version`` is the number of migrations applied. Add new ones at
the end of :data:`MIGRATIONS`; never edit one that has shipped.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable

#: ``PRAGMA application_id`` of a tprompt database ("tprt").
APPLICATION_ID = 0x74707274


def _run_all(conn: sqlite3.Connection, statements: list[str]) -> None:
    # Not executescript(): it would commit the migration's transaction.
    for statement in statements:
        conn.execute(statement)


def _m1_event_log(conn: sqlite3.Connection) -> None:
    _run_all(
        conn,
        [
            """CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            parent_run_id TEXT REFERENCES runs(run_id),
            parent_seq INTEGER,
            status TEXT NOT NULL,
            name TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
            """CREATE TABLE events (
            run_id TEXT NOT NULL REFERENCES runs(run_id),
            seq INTEGER NOT NULL,
            event_id TEXT NOT NULL UNIQUE,
            type TEXT NOT NULL,
            schema_version INTEGER NOT NULL,
            payload TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (run_id, seq)
        )""",
            "CREATE INDEX events_type ON events(type)",
            "CREATE INDEX runs_parent ON runs(parent_run_id)",
            # The library never changes an event once written; these triggers
            # make that hold for anyone else who opens the file too.
            "CREATE TRIGGER events_no_update BEFORE UPDATE ON events"
            " BEGIN SELECT RAISE(ABORT, 'tprompt events are immutable'); END",
            "CREATE TRIGGER events_no_delete BEFORE DELETE ON events"
            " BEGIN SELECT RAISE(ABORT, 'tprompt events are immutable'); END",
        ],
    )


def _m2_run_requests(conn: sqlite3.Connection) -> None:
    # Requests to a running run from another process (``tprompt pause``). Not
    # events: the run's own process turns a request into ``run.paused``.
    _run_all(
        conn,
        [
            """CREATE TABLE run_requests (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            created_at TEXT NOT NULL,
            handled_at TEXT
        )""",
            "CREATE INDEX run_requests_open ON run_requests(run_id, handled_at)",
        ],
    )


def _m3_llm_cache_and_transcripts(conn: sqlite3.Connection) -> None:
    # Bodies (messages, responses) are stored once by sha256 and shared by every
    # transcript row and cache entry that names them, so forks copy nothing.
    _run_all(
        conn,
        [
            """CREATE TABLE bodies (
            hash TEXT PRIMARY KEY,
            body TEXT NOT NULL
        )""",
            """CREATE TABLE llm_cache (
            cache_key TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            model TEXT NOT NULL,
            response_hash TEXT NOT NULL REFERENCES bodies(hash),
            prompt_tokens INTEGER NOT NULL,
            completion_tokens INTEGER NOT NULL,
            cost REAL,
            created_at TEXT NOT NULL
        )""",
            """CREATE TABLE transcripts (
            call_id TEXT PRIMARY KEY,
            run_id TEXT,
            seq INTEGER,
            step TEXT,
            agent TEXT NOT NULL,
            model TEXT NOT NULL,
            kind TEXT NOT NULL,
            cache_key TEXT NOT NULL,
            request_hash TEXT NOT NULL REFERENCES bodies(hash),
            response_hash TEXT REFERENCES bodies(hash),
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            latency_s REAL NOT NULL,
            cache_hit INTEGER NOT NULL,
            cost REAL,
            error TEXT,
            created_at TEXT NOT NULL
        )""",
            "CREATE INDEX transcripts_run ON transcripts(run_id, seq)",
        ],
    )


def _m4_experiments(conn: sqlite3.Connection) -> None:
    # An experiment is a named grid of runs. Its cells are ordinary runs found
    # by name (``runs.name``) and config, so only the experiment itself needs a row.
    _run_all(
        conn,
        [
            """CREATE TABLE experiments (
            experiment_id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            config TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""",
        ],
    )


def _m5_run_leases(conn: sqlite3.Connection) -> None:
    # One process executes a run at a time: the holder of its lease. ``started`` is the
    # holder's start time (from /proc), so a pid reused by another process is not mistaken
    # for a live holder.
    _run_all(
        conn,
        [
            """CREATE TABLE run_leases (
            run_id TEXT PRIMARY KEY,
            pid INTEGER NOT NULL,
            host TEXT NOT NULL,
            started TEXT NOT NULL,
            acquired_at TEXT NOT NULL
        )""",
        ],
    )


def _m6_run_summaries(conn: sqlite3.Connection) -> None:
    # One row per run written with its events (``EventLog.append(..., summary=)``): listing
    # runs reads these instead of folding every run. ``seq`` is the run's last seq the row
    # describes; a row behind its run is ignored by readers.
    _run_all(
        conn,
        [
            """CREATE TABLE run_summaries (
            run_id TEXT PRIMARY KEY REFERENCES runs(run_id),
            seq INTEGER NOT NULL,
            summary TEXT NOT NULL
        )""",
        ],
    )


def _m7_call_claims(conn: sqlite3.Connection) -> None:
    # A cache key some process is paying for right now (its holder as in run_leases): another process
    # that needs the same answer waits for it instead of paying again. Deleted once answered.
    _run_all(
        conn,
        [
            """CREATE TABLE call_claims (
            cache_key TEXT PRIMARY KEY,
            pid INTEGER NOT NULL,
            host TEXT NOT NULL,
            started TEXT NOT NULL
        )""",
        ],
    )


Migration = Callable[[sqlite3.Connection], None]

#: Every migration, in order. ``user_version`` == ``len(MIGRATIONS)`` when current.
MIGRATIONS: list[Migration] = [
    _m1_event_log,
    _m2_run_requests,
    _m3_llm_cache_and_transcripts,
    _m4_experiments,
    _m5_run_leases,
    _m6_run_summaries,
    _m7_call_claims,
]


@functools.cache
def current_tables() -> frozenset[str]:
    """The tables (and triggers) a database at the current schema version has: the migrations run on ``:memory:``."""
    conn = sqlite3.connect(":memory:")
    try:
        for migration in MIGRATIONS:
            migration(conn)
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger')").fetchall()
    finally:
        conn.close()
    return frozenset(name for (name,) in rows if not name.startswith("sqlite_"))
