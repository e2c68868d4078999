"""Merging tprompt databases: a lossless union of runs, events, calls and experiments by their ids.

A merge reads each source read-only (``ATTACH ... mode=ro``) and copies what the
destination lacks with ``INSERT ... SELECT``, in one write transaction on the
destination: all of it or nothing. What is unioned, and by which id:

- ``runs`` by ``run_id`` and ``events`` by ``(run_id, seq)``. A run in both
  files whose events in one are a prefix of the other's (equal ``event_id``,
  ``type``, ``schema_version`` and ``payload`` at every common seq) is one run
  with the longer log; its ``runs`` row (status, ``updated_at``) and its
  ``run_summaries`` row come from the side with the longer log. Different rows
  at a common seq are refused (:class:`~tprompt.errors.MergeConflict`), naming
  the run and the first differing seq.
- ``transcripts`` by ``call_id``, ``bodies`` by ``hash``, ``llm_cache`` by
  ``cache_key`` (when both files hold a key with different rows, the
  destination's is kept and counted in :attr:`MergeCounts.cache_kept`).
- ``experiments`` by ``experiment_id``; one name under two ids is refused.

``run_requests`` (pause requests), ``run_leases`` (which process runs a
run) and ``call_claims`` (which process is paying for a call) belong to the
processes working on one file and are never merged.

A fork must end up with its parent: a fork whose parent is in none of the
merged files (nor in the destination) is refused
(:class:`~tprompt.errors.MissingForkParent`). A source that is not a tprompt
database, is damaged (``PRAGMA integrity_check``) or has a newer schema is
refused before anything is written. Merging the same source again adds nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from ..errors import (
    DatabaseDamaged,
    MergeConflict,
    MissingForkParent,
    NotATPromptDatabase,
    ReadOnlyDatabase,
    StoreError,
    UnknownRun,
    UsageError,
)
from .db import Store, _check_and_migrate, default_busy_timeout, immediate, reader_uri, translate

#: Sources attached to one connection at once (SQLite allows 10 by default; the temp schema is apart).
MAX_ATTACHED = 8

_RUN_COLUMNS = "run_id, parent_run_id, parent_seq, status, name, created_at, updated_at"
_EVENT_COLUMNS = "run_id, seq, event_id, type, schema_version, payload, created_at"
_CACHE_COLUMNS = "cache_key, kind, model, response_hash, prompt_tokens, completion_tokens, cost, created_at"
_TRANSCRIPT_COLUMNS = (
    "call_id, run_id, seq, step, agent, model, kind, cache_key, request_hash, response_hash,"
    " prompt_tokens, completion_tokens, latency_s, cache_hit, cost, error, created_at"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class MergeCounts:
    """What a merge added to the destination: new rows per table, and runs whose log grew."""

    runs: int = 0
    #: runs already in the destination whose log the source made longer (prefix rule)
    runs_extended: int = 0
    events: int = 0
    transcripts: int = 0
    bodies: int = 0
    cache: int = 0
    #: cache keys both files hold with different rows: the destination's row was kept
    cache_kept: int = 0
    experiments: int = 0
    summaries: int = 0

    def __add__(self, other: MergeCounts) -> MergeCounts:
        return MergeCounts(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    @property
    def changed(self) -> bool:
        """Whether the merge wrote anything (False: the destination already held every row)."""
        return any(getattr(self, f.name) for f in fields(self) if f.name != "cache_kept")

    def describe(self) -> str:
        """One line, e.g. ``2 runs (1 extended), 140 events, 60 transcripts, 90 bodies, 58 cache rows, 1 experiment``."""
        if not self.changed and not self.cache_kept:
            return "nothing new: the destination already held every row"

        def n(count: int, word: str, plural: str | None = None) -> str:
            return f"{count} {word if count == 1 else plural or word + 's'}"

        runs = n(self.runs, "new run")
        if self.runs_extended:
            runs += f" ({self.runs_extended} extended)"
        cache = n(self.cache, "cache row")
        if self.cache_kept:
            cache += f" ({self.cache_kept} kept from the destination)"
        parts = [runs, n(self.events, "event"), n(self.transcripts, "transcript"), n(self.bodies, "body", "bodies"),
                 cache, n(self.experiments, "experiment"), n(self.summaries, "run summary", "run summaries")]
        return ", ".join(parts)


def check_source(source: Path) -> None:
    """Refuse a file that is not a readable, undamaged tprompt database of a schema this code knows.

    Raises:
        StoreError: missing or a folder.
        NotATPromptDatabase: not SQLite, another program's database, or empty.
        DatabaseDamaged: ``PRAGMA integrity_check`` finds damage (e.g. a truncated copy).
        SchemaTooNew: written by a newer tprompt.
    """
    name = str(source)
    if not source.exists():
        raise StoreError(f"no file {name} to merge", hint="check the path")
    if source.is_dir():
        raise StoreError(f"{name} is a directory, not a tprompt database", hint="name the database files to merge")
    if source.stat().st_size == 0:
        raise NotATPromptDatabase(f"{name} is empty, not a tprompt database", hint="name a tprompt database")
    try:
        conn = sqlite3.connect(reader_uri(name), uri=True, timeout=default_busy_timeout())
    except sqlite3.Error as exc:
        raise translate(exc, name) from exc
    try:
        _check_and_migrate(conn, name, readonly=True, create=False)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        problems = [r[0] for r in conn.execute("PRAGMA integrity_check(5)")]
    except sqlite3.DatabaseError as exc:
        raise translate(exc, name) from exc
    finally:
        conn.close()
    if problems != ["ok"]:
        raise DatabaseDamaged(
            f"{name} is damaged ({problems[0]})",
            hint="a truncated or partly copied file? copy it again from where it was written",
        )
    if not {"runs", "events"} <= tables:
        raise DatabaseDamaged(f"{name} is damaged: it has no runs or events table", hint="copy it again")


def merge_into(dst: Store, source: Path, *, run_ids: Collection[str] | None = None) -> MergeCounts:
    """Merge the tprompt database ``source`` into ``dst`` in one write transaction (all or nothing).

    Args:
        dst: a writable store.
        source: a tprompt database file; opened read-only, never written.
        run_ids: only these runs (ids in ``source``), their ancestors (forks'
            parents, recursively), the transcripts of all of them, and the
            bodies and cache rows those transcripts name; no experiments. This
            seeds a worker's shard with one cell's state: resuming the run there
            replays every call it made before from the cache. Cache rows no
            transcript of these runs names (another run's calls) stay behind.

    Returns:
        The rows added.

    Raises:
        UsageError: ``source`` is the destination's own file.
        NotATPromptDatabase, DatabaseDamaged, SchemaTooNew: see :func:`check_source`.
        UnknownRun: a run of ``run_ids`` is not in ``source``.
        MergeConflict: a run or experiment differs between the files.
        MissingForkParent: a fork's parent is in neither file.
    """
    return merge_many(dst, [Path(source)], run_ids=run_ids)


def merge_many(
    dst: Store,
    sources: Sequence[Path],
    *,
    run_ids: Collection[str] | None = None,
    labels: Sequence[str] | None = None,
    checked: bool = False,
) -> MergeCounts:
    """Merge up to :data:`MAX_ATTACHED` sources into ``dst`` in one write transaction; see :func:`merge_into`.

    ``labels`` name the sources in error messages (default: their paths); ``checked``: the caller
    has passed each source through :func:`check_source` already.
    """
    if len(sources) > MAX_ATTACHED:
        raise ValueError(f"merge_many takes at most {MAX_ATTACHED} sources at once")
    return _merge(dst, sources, run_ids=run_ids, labels=labels, lineage=True, checked=checked)


def _merge(
    dst: Store,
    sources: Sequence[Path],
    *,
    run_ids: Collection[str] | None,
    labels: Sequence[str] | None,
    lineage: bool,
    checked: bool = False,
) -> MergeCounts:
    if dst.readonly:
        raise ReadOnlyDatabase(f"{dst.path} was opened read-only; cannot merge into it")
    sources = [Path(s) for s in sources]
    names = list(labels) if labels is not None else [str(s) for s in sources]
    for source in sources:
        if _same_file(source, Path(dst.path)):
            raise UsageError(f"{source} is the database merged into", hint="merge it into another file")
        if not checked:  # merge_files checked them all before creating anything
            check_source(source)
    total = MergeCounts()
    with dst._lock, _attached(dst, sources) as aliases, immediate(dst._conn, dst.path) as conn:
        if lineage:
            # A fork may arrive before its parent (another source): the check is ours, at the end.
            conn.execute("PRAGMA defer_foreign_keys = ON")
        for alias, name in zip(aliases, names):
            total += _merge_schema(conn, alias, name, dst.path, run_ids)
        conn.execute("DROP TABLE IF EXISTS temp.merge_runs")
        if lineage:
            check_lineage(conn, names)
    return total


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them is missing (or ":memory:"): they are not one file
        return False


@contextlib.contextmanager
def _attached(dst: Store, sources: Sequence[Path]) -> Iterator[list[str]]:
    conn = dst._conn
    aliases: list[str] = []
    try:
        for i, source in enumerate(sources):
            alias = f"merge_src{i}"
            try:
                # ATTACH cannot run inside a transaction: the merge's transaction starts after it.
                conn.execute(f"ATTACH DATABASE ? AS {alias}", (reader_uri(str(source)),))
            except sqlite3.Error as exc:
                raise translate(exc, str(source)) from exc
            aliases.append(alias)
        yield aliases
    finally:
        for alias in aliases:
            with contextlib.suppress(sqlite3.Error):
                conn.execute(f"DETACH DATABASE {alias}")


def _has_table(conn: sqlite3.Connection, schema: str, table: str) -> bool:
    return conn.execute(
        f"SELECT 1 FROM {schema}.sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone() is not None


def _choose_runs(conn: sqlite3.Connection, s: str, name: str, run_ids: Collection[str] | None) -> None:
    conn.execute("DROP TABLE IF EXISTS temp.merge_runs")
    conn.execute(
        "CREATE TEMP TABLE merge_runs (run_id TEXT PRIMARY KEY, in_dst INTEGER, src_last INTEGER, dst_last INTEGER)"
    )
    if run_ids is None:
        conn.execute(f"INSERT INTO temp.merge_runs (run_id) SELECT run_id FROM {s}.runs")
    else:
        wanted = sorted(set(run_ids))
        for run_id in wanted:
            if conn.execute(f"SELECT 1 FROM {s}.runs WHERE run_id = ?", (run_id,)).fetchone() is None:
                raise UnknownRun(f"no run {run_id!r} in {name}", hint="`tprompt --db FILE runs` lists its runs",
                                 run_id=run_id)
        conn.execute(
            "INSERT INTO temp.merge_runs (run_id)"
            " WITH RECURSIVE chosen(run_id) AS (SELECT value FROM json_each(?)"
            f" UNION SELECT r.parent_run_id FROM {s}.runs r JOIN chosen c ON r.run_id = c.run_id"
            " WHERE r.parent_run_id IS NOT NULL)"
            " SELECT run_id FROM chosen",
            (json.dumps(wanted),),
        )
    conn.execute(
        "UPDATE temp.merge_runs SET"
        " in_dst = EXISTS (SELECT 1 FROM main.runs d WHERE d.run_id = merge_runs.run_id),"
        f" src_last = (SELECT max(seq) FROM {s}.events e WHERE e.run_id = merge_runs.run_id),"
        " dst_last = (SELECT max(seq) FROM main.events e WHERE e.run_id = merge_runs.run_id)"
    )


def _ran_differently(message: str, run_id: str, seq: int | None) -> MergeConflict:
    return MergeConflict(message, hint="the files ran the same run id differently; merge only one of them",
                         run_id=run_id, seq=seq)


def _check_conflicts(conn: sqlite3.Connection, s: str, name: str, dst_name: str) -> None:
    row = conn.execute(
        "SELECT m.run_id, d.parent_run_id, d.parent_seq, r.parent_run_id, r.parent_seq FROM temp.merge_runs m"
        f" JOIN {s}.runs r ON r.run_id = m.run_id JOIN main.runs d ON d.run_id = m.run_id"
        " WHERE d.parent_run_id IS NOT r.parent_run_id OR d.parent_seq IS NOT r.parent_seq ORDER BY m.run_id LIMIT 1"
    ).fetchone()
    if row is not None:
        run_id, dp, ds, sp, ss = row
        raise _ran_differently(f"run {run_id} differs between {dst_name} and {name}: forked from {dp or 'nothing'} at"
                               f" seq {ds} in one, from {sp or 'nothing'} at seq {ss} in the other", run_id, None)
    row = conn.execute(
        f"SELECT e.run_id, min(e.seq) FROM temp.merge_runs m JOIN {s}.events e ON e.run_id = m.run_id"
        " JOIN main.events d ON d.run_id = e.run_id AND d.seq = e.seq"
        " WHERE m.in_dst AND (d.event_id IS NOT e.event_id OR d.type IS NOT e.type"
        " OR d.schema_version IS NOT e.schema_version OR d.payload IS NOT e.payload)"
        " GROUP BY e.run_id ORDER BY e.run_id LIMIT 1"
    ).fetchone()
    if row is not None:
        run_id, seq = row
        raise _ran_differently(f"run {run_id} has different events at seq {seq} in {dst_name} and in {name}", run_id, seq)
    row = conn.execute(
        f"SELECT e.event_id, e.run_id, e.seq, d.run_id, d.seq FROM temp.merge_runs m JOIN {s}.events e"
        " ON e.run_id = m.run_id JOIN main.events d ON d.event_id = e.event_id"
        " WHERE d.run_id != e.run_id OR d.seq != e.seq LIMIT 1"
    ).fetchone()
    if row is not None:
        event_id, run_id, seq, other_run, other_seq = row
        raise MergeConflict(
            f"event {event_id} is run {run_id} seq {seq} in {name} but run {other_run} seq {other_seq} in {dst_name}",
            hint="the files disagree on an event's place; merge only one of them", run_id=run_id, seq=seq,
        )


def _check_experiments(conn: sqlite3.Connection, s: str, name: str, dst_name: str) -> None:
    row = conn.execute(
        f"SELECT e.name, d.experiment_id, e.experiment_id FROM {s}.experiments e JOIN main.experiments d"
        " ON d.name = e.name WHERE d.experiment_id != e.experiment_id LIMIT 1"
    ).fetchone()
    if row is not None:
        raise MergeConflict(
            f"experiment {row[0]!r} is {row[1]} in {dst_name} but {row[2]} in {name}",
            hint="two experiments of one name were started apart; merge only one of them, or rename one's config",
        )
    row = conn.execute(
        f"SELECT e.experiment_id FROM {s}.experiments e JOIN main.experiments d ON d.experiment_id = e.experiment_id"
        " WHERE d.name != e.name OR d.config != e.config LIMIT 1"
    ).fetchone()
    if row is not None:
        raise MergeConflict(f"experiment {row[0]} has another name or config in {name} than in {dst_name}",
                            hint="merge only one of them")


def _merge_schema(
    conn: sqlite3.Connection, s: str, name: str, dst_name: str, run_ids: Collection[str] | None
) -> MergeCounts:
    """Copy what schema ``s`` has and ``main`` lacks; the caller holds the transaction."""
    _choose_runs(conn, s, name, run_ids)
    _check_conflicts(conn, s, name, dst_name)
    with_experiments = run_ids is None and _has_table(conn, s, "experiments")
    if with_experiments:
        _check_experiments(conn, s, name, dst_name)
    counts: dict[str, int] = {}
    counts["runs"] = conn.execute(
        f"INSERT INTO main.runs ({_RUN_COLUMNS}) SELECT {', '.join('r.' + c for c in _RUN_COLUMNS.split(', '))}"
        f" FROM {s}.runs r JOIN temp.merge_runs m ON m.run_id = r.run_id WHERE NOT m.in_dst ORDER BY r.rowid"
    ).rowcount
    # The prefix rule: the longer log's side says what the run's status is now.
    counts["runs_extended"] = conn.execute(
        f"UPDATE main.runs SET (status, updated_at) = (SELECT r.status, r.updated_at FROM {s}.runs r"
        " WHERE r.run_id = main.runs.run_id)"
        " WHERE run_id IN (SELECT run_id FROM temp.merge_runs WHERE in_dst"
        " AND coalesce(src_last, 0) > coalesce(dst_last, 0))"
    ).rowcount
    counts["events"] = conn.execute(
        f"INSERT INTO main.events ({_EVENT_COLUMNS}) SELECT {', '.join('e.' + c for c in _EVENT_COLUMNS.split(', '))}"
        f" FROM temp.merge_runs m JOIN {s}.events e ON e.run_id = m.run_id"
        " WHERE e.seq > coalesce(m.dst_last, 0) ORDER BY e.run_id, e.seq"
    ).rowcount
    if _has_table(conn, s, "run_summaries"):
        counts["summaries"] = conn.execute(
            f"INSERT OR REPLACE INTO main.run_summaries (run_id, seq, summary) SELECT x.run_id, x.seq, x.summary"
            f" FROM {s}.run_summaries x JOIN temp.merge_runs m ON m.run_id = x.run_id"
            " WHERE x.seq > coalesce((SELECT d.seq FROM main.run_summaries d WHERE d.run_id = x.run_id), -1)"
        ).rowcount
    if _has_table(conn, s, "transcripts"):
        counts.update(_merge_calls(conn, s, selected=run_ids is not None))
    if with_experiments:
        counts["experiments"] = conn.execute(
            f"INSERT INTO main.experiments (experiment_id, name, config, created_at)"
            f" SELECT e.experiment_id, e.name, e.config, e.created_at FROM {s}.experiments e"
            " WHERE NOT EXISTS (SELECT 1 FROM main.experiments d WHERE d.experiment_id = e.experiment_id)"
            " ORDER BY e.rowid"
        ).rowcount
    return MergeCounts(**counts)


def _merge_calls(conn: sqlite3.Connection, s: str, *, selected: bool) -> dict[str, int]:
    """Bodies, cache rows and transcripts: all of them, or (``selected``) those of the chosen runs' calls."""
    if selected:
        calls = f"(SELECT * FROM {s}.transcripts WHERE run_id IN (SELECT run_id FROM temp.merge_runs))"
        cache = f"(SELECT * FROM {s}.llm_cache WHERE cache_key IN (SELECT cache_key FROM {calls}))"
        bodies = (
            f"(SELECT * FROM {s}.bodies WHERE hash IN (SELECT request_hash FROM {calls}"
            f" UNION SELECT response_hash FROM {calls} UNION SELECT response_hash FROM {cache}))"
        )
    else:
        calls, cache, bodies = f"{s}.transcripts", f"{s}.llm_cache", f"{s}.bodies"
    counts = {
        "bodies": conn.execute(
            f"INSERT INTO main.bodies (hash, body) SELECT b.hash, b.body FROM {bodies} b"
            " WHERE NOT EXISTS (SELECT 1 FROM main.bodies d WHERE d.hash = b.hash)"
        ).rowcount,
        "cache_kept": conn.execute(
            f"SELECT count(*) FROM {cache} c JOIN main.llm_cache d ON d.cache_key = c.cache_key"
            " WHERE d.response_hash != c.response_hash OR d.kind != c.kind OR d.model != c.model"
        ).fetchone()[0],
    }
    counts["cache"] = conn.execute(
        f"INSERT INTO main.llm_cache ({_CACHE_COLUMNS}) SELECT {', '.join('c.' + c for c in _CACHE_COLUMNS.split(', '))}"
        f" FROM {cache} c WHERE NOT EXISTS (SELECT 1 FROM main.llm_cache d WHERE d.cache_key = c.cache_key)"
    ).rowcount
    columns = ", ".join("t." + c.strip() for c in _TRANSCRIPT_COLUMNS.split(","))
    counts["transcripts"] = conn.execute(
        f"INSERT INTO main.transcripts ({_TRANSCRIPT_COLUMNS}) SELECT {columns} FROM {calls} t"
        " WHERE NOT EXISTS (SELECT 1 FROM main.transcripts d WHERE d.call_id = t.call_id) ORDER BY t.rowid"
    ).rowcount
    return counts


def check_lineage(conn: sqlite3.Connection, names: Sequence[str]) -> None:
    """Refuse a database in which a fork's parent is missing, or shorter than the fork point."""
    files = ", ".join(names) if len(names) <= 3 else f"{', '.join(names[:3])}, ..."
    row = conn.execute(
        "SELECT r.run_id, r.parent_run_id FROM main.runs r WHERE r.parent_run_id IS NOT NULL"
        " AND NOT EXISTS (SELECT 1 FROM main.runs p WHERE p.run_id = r.parent_run_id) ORDER BY r.run_id LIMIT 1"
    ).fetchone()
    if row is not None:
        raise MissingForkParent(
            f"run {row[0]} is a fork of run {row[1]}, which is in none of the files merged ({files})",
            hint=f"merge the file that holds {row[1]} in the same command", run_id=row[0], parent_run_id=row[1],
        )
    row = conn.execute(
        "SELECT r.run_id, r.parent_run_id, r.parent_seq, p.last FROM main.runs r JOIN"
        " (SELECT p.run_id, coalesce((SELECT max(seq) FROM main.events e WHERE e.run_id = p.run_id),"
        " p.parent_seq, 0) AS last FROM main.runs p) p ON p.run_id = r.parent_run_id"
        " WHERE r.parent_seq > p.last ORDER BY r.run_id LIMIT 1"
    ).fetchone()
    if row is not None:
        raise MissingForkParent(
            f"run {row[0]} forks run {row[1]} at seq {row[2]}, but the files merged ({files}) hold"
            f" only its events up to seq {row[3]}",
            hint=f"merge the file that holds the longer log of {row[1]} too", run_id=row[0], parent_run_id=row[1],
        )


def merge_files(sources: Sequence[Path], into: Path) -> MergeCounts:
    """Merge the tprompt databases ``sources`` into the file ``into``, atomically.

    An existing ``into`` is opened (and migrated, if older) and gets every
    source in one write transaction. A new ``into`` is built under a temporary
    name beside it, checked with ``PRAGMA integrity_check`` and renamed into
    place, so a failure leaves no file. More than :data:`MAX_ATTACHED` sources
    for an existing file are first combined in such a temporary file, which is
    then merged in one transaction.

    Raises:
        UsageError: no sources, a source is ``into`` itself, or ``into``'s folder is missing.
        StoreError: see :func:`merge_into` (nothing is written).
    """
    into = Path(into)
    unique: list[Path] = []
    for source in map(Path, sources):
        if _same_file(source, into):
            raise UsageError(f"{source} is the file merged into (--into {into})", hint="name another --into file")
        if not any(_same_file(source, u) for u in unique):
            unique.append(source)
    if not unique:
        raise UsageError("no databases to merge", hint="e.g. tprompt merge a.db b.db --into all.db")
    for source in unique:
        check_source(source)
    if into.is_dir():
        raise UsageError(f"--into {into} is a directory", hint="name a database file")
    if not into.parent.is_dir():
        raise UsageError(f"--into {into}: folder {into.parent} does not exist", hint="create it first")
    if into.exists():
        with Store(into, create=False) as dst:
            if len(unique) <= MAX_ATTACHED:
                return merge_many(dst, unique, checked=True)
            with _scratch(into) as tmp:
                built = _build(unique, tmp, lineage=False)
                merged = merge_many(dst, [tmp], labels=[f"the {len(unique)} files merged"], checked=True)
            return MergeCounts(**{**_as_dict(merged), "cache_kept": merged.cache_kept + built.cache_kept})
    with _scratch(into) as tmp:
        counts = _build(unique, tmp)
        os.replace(tmp, into)
    return counts


def _as_dict(counts: MergeCounts) -> dict[str, int]:
    return {f.name: getattr(counts, f.name) for f in fields(counts)}


@contextlib.contextmanager
def _scratch(into: Path) -> Iterator[Path]:
    """A temporary database path beside ``into``; whatever is left of it is removed at the end."""
    tmp = into.with_name(f".{into.name}.{os.getpid()}.merging")
    try:
        yield tmp
    finally:
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm"), Path(f"{tmp}-journal")):
            with contextlib.suppress(OSError):
                leftover.unlink()


def _build(sources: Sequence[Path], tmp: Path, *, lineage: bool = True) -> MergeCounts:
    """A new database at ``tmp`` holding every source; checked whole, closed when returned.

    ``lineage=False``: a fork's parent may be missing (the file is merged on into one that may hold it).
    """
    names = [str(s) for s in sources]
    with Store(tmp) as store:
        # Groups of sources in several transactions (SQLite attaches at most 10 files): a fork may come
        # in a group before its parent, so foreign keys wait for the one check at the end. The file is
        # not in place yet, so the groups need not be one transaction.
        with store.reading() as conn:
            conn.execute("PRAGMA foreign_keys = OFF")
        counts = MergeCounts()
        for start in range(0, len(sources), MAX_ATTACHED):
            counts += _merge(store, sources[start : start + MAX_ATTACHED], run_ids=None, labels=None, lineage=False,
                             checked=True)
        with store.reading() as conn:
            if lineage:
                check_lineage(conn, names)
            conn.execute("PRAGMA foreign_keys = ON")
        problems = store.integrity_problems(foreign_keys=lineage)
        if problems:
            raise DatabaseDamaged(f"the merged file {tmp} fails its integrity check ({problems[0]})",
                                  hint="nothing was written; report this as a bug")
    return counts


__all__ = ("MAX_ATTACHED", "MergeCounts", "check_lineage", "check_source", "merge_files",
           "merge_into", "merge_many")
