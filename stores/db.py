"""Opening a tprompt database: WAL, busy timeout, migrations, error translation.

Writers open with :func:`open_database`; readers (``tprompt ui``, listings) pass
``readonly=True`` and never write, not even a migration. :class:`Store` is the
one object that owns an open database: its connection, the lock serializing its
use, and its path; the event log, transcripts, leases and control requests all
run their statements through it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Self

from ..errors import (
    DatabaseDamaged,
    DatabaseLocked,
    NotATPromptDatabase,
    ReadOnlyDatabase,
    SchemaTooNew,
    StoreError,
)
from ._schema import APPLICATION_ID, MIGRATIONS, current_tables

if TYPE_CHECKING:
    import sqlite_utils


def now_iso() -> str:
    """The time stamp of every row the stores write (UTC, microseconds)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


BUSY_TIMEOUT_S = 30.0


def default_busy_timeout() -> float:
    """Seconds to wait for another writer's lock: ``TPROMPT_BUSY_TIMEOUT`` or 30."""
    raw = os.environ.get("TPROMPT_BUSY_TIMEOUT")
    if not raw:
        return BUSY_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        raise StoreError(
            f"TPROMPT_BUSY_TIMEOUT={raw!r} is not a number of seconds", hint="e.g. TPROMPT_BUSY_TIMEOUT=5"
        ) from None
    return max(value, 0.0)


def _writable(path: str | Path) -> bool | None:
    """Whether ``path`` (a file or a folder) can be written; None when it cannot be looked at.

    os.access sees a read-only mount (EROFS) and an immutable file or folder even for root, but says
    "writable" to root whatever the mode bits: one with no write bit at all was marked read-only on
    purpose, so that counts as read-only too.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return bool(mode & 0o222) and os.access(path, os.W_OK)


def reader_uri(name: str) -> str:
    """The URI a reader opens ``name`` with: ``mode=ro``, or ``immutable=1`` in a folder no one can write.

    A database in WAL mode needs its ``-shm`` file even to be read, and a reader
    cannot create that file in a read-only folder (a read-only mount, a folder
    marked immutable, or without write permission): ``mode=ro`` then fails with
    "unable to open database file". Where nothing can be written, nothing can
    change the file either, so it is opened as immutable (no locks, no ``-shm``).
    A ``-wal`` file with content holds commits not yet in the main file, which
    ``immutable`` would not see: then ``mode=ro`` it stays.
    """
    path = Path(name).resolve()
    uri = path.as_uri()
    if _writable(path.parent):
        return f"{uri}?mode=ro"
    try:
        wal_size = os.stat(f"{path}-wal").st_size
    except OSError:
        wal_size = 0
    return f"{uri}?mode=ro" if wal_size else f"{uri}?immutable=1"


def open_database(
    path: str | os.PathLike[str] = ":memory:",
    *,
    readonly: bool = False,
    timeout: float | None = None,
    create: bool = True,
) -> sqlite_utils.Database:
    """Open (and, if writable, create or migrate) a tprompt database, as a ``sqlite_utils.Database``.

    The handle for querying a database from Python (``open_database("tprompt.db", readonly=True)["events"]
    .rows_where("run_id = ?", [run])``). tprompt's own stores use :func:`connect` (the same checks and
    migrations, a plain connection): importing sqlite-utils imports pandas and numpy where they are
    installed, which no read-only command needs (``benchmarks/bench_startup.py``).

    Raises:
        see :func:`connect`.
    """
    import sqlite_utils

    return sqlite_utils.Database(connect(path, readonly=readonly, timeout=timeout, create=create))


def connect(
    path: str | os.PathLike[str] = ":memory:",
    *,
    readonly: bool = False,
    timeout: float | None = None,
    create: bool = True,
) -> sqlite3.Connection:
    """Open (and, if writable, create or migrate) a tprompt database: a connection in autocommit mode.

    Raises:
        NotATPromptDatabase: the file is not SQLite, or is another program's;
            or (``create=False``) it is missing or empty.
        DatabaseDamaged: pages are damaged, or (writers) a table of its schema version is missing.
        SchemaTooNew: written by a newer tprompt.
        ReadOnlyDatabase: a write was needed but the file cannot be written.
        DatabaseLocked: another process holds the lock past the timeout.

    ``timeout`` (seconds) defaults to :func:`default_busy_timeout`. A writer
    with ``create=False`` (one that works on runs already there: resume,
    pause, review, fork) neither creates the file nor writes a schema into an
    empty one; it still upgrades a tprompt database of an older version.
    """
    if timeout is None:
        timeout = default_busy_timeout()
    name = str(path)
    memory = name == ":memory:"
    if not memory and Path(name).is_dir():
        raise StoreError(
            f"{name} is a directory, not a tprompt database",
            hint="pass --db with a file path, e.g. --db runs.db (or set TPROMPT_DB)",
        )
    if (readonly or not create) and not memory and not Path(name).exists():
        raise StoreError(
            f"no tprompt database at {name}",
            hint="pass --db PATH or set TPROMPT_DB to an existing database",
        )
    if readonly and not memory:
        conn = sqlite3.connect(reader_uri(name), uri=True, timeout=timeout, check_same_thread=False)
    else:
        if not memory and Path(name).exists() and _writable(name) is False:
            raise ReadOnlyDatabase(
                f"database {name} is read-only",
                hint="make it writable or pass --db to another file",
            )
        if not memory and not _writable(Path(name).resolve().parent):
            raise ReadOnlyDatabase(
                f"database {name} is in a folder that cannot be written ({Path(name).resolve().parent})",
                hint="SQLite writes its -wal and -shm files beside the database: make the folder writable or "
                "copy the database to one that is; commands that only read (runs, show) read it where it is",
            )
        conn = sqlite3.connect(name, timeout=timeout, check_same_thread=False)
    # We manage transactions ourselves (BEGIN IMMEDIATE for appends).
    conn.isolation_level = None
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        _check_and_migrate(conn, name, readonly=readonly, create=create or memory)
        if not readonly and not memory:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise translate(exc, name) from exc
    except Exception:
        conn.close()
        raise
    return conn


def _check_and_migrate(conn: sqlite3.Connection, name: str, *, readonly: bool, create: bool = True) -> None:
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if app_id != APPLICATION_ID and (tables or version):
        raise NotATPromptDatabase(
            f"{name} is an SQLite database, but not a tprompt one",
            hint="pass --db to a tprompt database or to a new file",
        )
    if version > len(MIGRATIONS):
        raise SchemaTooNew(
            f"{name} has schema version {version}; this tprompt knows up to {len(MIGRATIONS)}",
            hint="upgrade tprompt",
        )
    if app_id != APPLICATION_ID and not create:
        raise NotATPromptDatabase(
            f"{name} is not a tprompt database (it is empty)",
            hint="pass --db to the database that holds your runs; `tprompt run` creates one",
        )
    if version == len(MIGRATIONS):
        if not readonly:
            _check_tables(conn, name, version)
        return
    if readonly:
        if app_id != APPLICATION_ID:
            raise NotATPromptDatabase(f"{name} is not a tprompt database (it is empty)")
        # Migrations only add tables: a reader can use an older file as it is
        # (the next writer upgrades it); what the old file lacks reads as empty.
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Re-read inside the lock: another process may have migrated meanwhile.
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
            migration(conn)
            conn.execute(f"PRAGMA user_version = {number}")
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _check_tables(conn: sqlite3.Connection, name: str, version: int) -> None:
    # A writer of a file that says it is current but lacks a table would fail half-way (after `run` said
    # "created"); refuse it before anything is written.
    have = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger')")}
    missing = sorted(current_tables() - have)
    if missing:
        raise DatabaseDamaged(
            f"{name} is damaged: schema version {version} has {', '.join(missing)}, which the file lacks",
            hint="restore it from a backup, or pass --db to another file",
        )


def has_table(conn: sqlite3.Connection, name: str) -> bool:
    """Whether the database has table ``name`` (a reader may open a file from before its migration)."""
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def damaged(name: str, finding: str) -> DatabaseDamaged:
    """The error of a file whose pages are damaged: ``finding`` is SQLite's word for it."""
    return DatabaseDamaged(
        f"{name} is damaged ({finding})",
        hint=f"restore it from a backup, or copy out what is readable: sqlite3 {name} .recover | sqlite3 new.db",
    )


def translate(exc: sqlite3.Error, name: str = "the database") -> StoreError:
    """Turn an sqlite3 error into the matching tprompt store error."""
    text = str(exc)
    low = text.lower()
    if "locked" in low or "busy" in low:
        return DatabaseLocked(
            f"{name} is locked by another process",
            hint="wait for it to finish or raise the busy timeout",
        )
    if "readonly" in low or "read-only" in low:
        return ReadOnlyDatabase(
            f"{name} is read-only", hint="make it writable or pass --db to another file"
        )
    if "malformed" in low:
        return damaged(name, text)
    if "not a database" in low or "encrypted" in low:
        return NotATPromptDatabase(
            f"{name} is not a tprompt database ({text})",
            hint="pass --db to a tprompt database or to a new file",
        )
    return StoreError(f"{name}: {text}")


@contextlib.contextmanager
def immediate(conn: sqlite3.Connection, name: str = "the database") -> Iterator[sqlite3.Connection]:
    """One write transaction taken with ``BEGIN IMMEDIATE``; rolled back on error."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        raise translate(exc, name) from exc
    try:
        yield conn
    except sqlite3.Error as exc:
        # e.g. "attempt to write a readonly database": a store error, not a traceback.
        _rollback(conn)
        raise translate(exc, name) from exc
    except BaseException:
        _rollback(conn)
        raise
    try:
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        _rollback(conn)
        raise translate(exc, name) from exc


def _rollback(conn: sqlite3.Connection) -> None:
    # SQLite may already have rolled back by itself (e.g. after SQLITE_FULL).
    if conn.in_transaction:
        conn.execute("ROLLBACK")


class Closing:
    """Something with a ``close()`` that a ``with`` block closes at its end."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Store(Closing):
    """One open tprompt database: its connection, the lock that serializes its use, its path.

    Everything that reads or writes the file through this object runs its
    statements under :meth:`reading` or :meth:`writing`, so one connection has
    one lock whoever uses it. It hands out the event log (:attr:`log`) and the
    transcripts (:attr:`transcripts`) on that connection; the lease and control
    functions (:mod:`.leases`, :mod:`.control`) go through the log's store.
    Nothing outside ``stores/`` touches the connection (``tests/test_layering.py``).

    Args:
        path: the database file, or ``":memory:"``.
        readonly: open read-only (readers such as the TUI); nothing is written, not even a migration.
        timeout: busy timeout in seconds (default :func:`default_busy_timeout`).
        create: a writer may create the file (False: it must already be a tprompt database).

    Raises:
        StoreError: see :func:`connect`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = ":memory:",
        *,
        readonly: bool = False,
        timeout: float | None = None,
        create: bool = True,
    ) -> None:
        self.path = str(path)
        self.readonly = readonly
        self._conn: sqlite3.Connection = connect(path, readonly=readonly, timeout=timeout, create=create)
        self._lock = threading.RLock()

    def close(self) -> None:
        """Close the connection (what was handed out stops working)."""
        with self._lock:
            self._conn.close()

    @contextlib.contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The connection for reads, under the lock; SQLite errors become store errors."""
        with self._lock:
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise translate(exc, self.path) from exc

    @contextlib.contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``) under the lock; rolled back on error."""
        with self._lock, immediate(self._conn, self.path) as conn:
            yield conn

    def has_table(self, name: str) -> bool:
        """Whether the file has table ``name`` (a reader may open a file from before its migration)."""
        with self.reading() as conn:
            return has_table(conn, name)

    def integrity_problems(self, *, foreign_keys: bool = True) -> list[str]:
        """``PRAGMA integrity_check``'s findings (up to 5), and ``foreign_key_check``'s; empty when the file is sound.

        Raises:
            DatabaseDamaged: a page is so damaged that SQLite cannot even check the file.
        """
        with self.reading() as conn:
            rows = [r[0] for r in conn.execute("PRAGMA integrity_check(5)")]
            if foreign_keys:
                rows += [f"foreign key: {r[0]} row {r[1]} names a missing {r[2]} row"
                         for r in conn.execute("PRAGMA foreign_key_check").fetchall()[:5]]
        return [] if rows == ["ok"] else [r for r in rows if r != "ok"]

    def check_undamaged(self) -> None:
        """Refuse a file with a damaged page before writing to it (a writer that never reads the damaged
        table would otherwise write on; the readers of it fail there anyway). Reads the whole file.

        Raises:
            DatabaseDamaged: ``PRAGMA integrity_check`` finds damage.
        """
        problems = self.integrity_problems(foreign_keys=False)
        if problems:
            raise damaged(self.path, problems[0])

    def backup(self, path: str | os.PathLike[str]) -> None:
        """Copy the whole database, consistently, into a new file at ``path``."""
        dest = sqlite3.connect(str(path))
        try:
            with self.reading() as conn:
                conn.backup(dest)
        except sqlite3.Error as exc:
            raise translate(exc, str(path)) from exc
        finally:
            dest.close()

