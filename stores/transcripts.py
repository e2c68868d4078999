"""The LLM-call cache and transcripts: content-addressed bodies, one row per call.

Bodies (the request's messages and parameters, the response) are stored once
under their sha256 and named by hash from ``llm_cache`` and ``transcripts``, so
a fork, a resumed run and a re-run share them. Writes take ``BEGIN IMMEDIATE``
on the store's own connection, so other writers (the event log) can work on
the same file at the same time.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .db import Closing, Store, has_table, now_iso
from .holder import Holder, holder_alive


def canonical_json(data: Any) -> str:
    """JSON with sorted keys and no spaces: equal data gives equal text."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def body_hash(text: str) -> str:
    """The content address of a body."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """A stored answer: the response body and its token counts."""

    response: str
    prompt_tokens: int
    completion_tokens: int
    cost: float | None


@dataclass(frozen=True, slots=True)
class CallPlace:
    """Which call it was and where it was made: the first columns of a transcript row."""

    call_id: str
    run_id: str | None
    seq: int | None
    step: str | None
    agent: str
    model: str
    kind: str
    cache_key: str


@dataclass(frozen=True, slots=True)
class TranscriptRow(CallPlace):
    """One model call as it is listed (bodies are loaded on demand)."""

    request_hash: str
    response_hash: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_s: float
    cache_hit: bool
    cost: float | None
    error: str | None
    created_at: str


@dataclass(frozen=True, slots=True)
class NewCall(CallPlace):
    """What the recorder writes for one call."""

    request: str  # canonical JSON body
    response: str | None  # None when the call failed
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_s: float
    cache_hit: bool
    cost: float | None = None
    error: str | None = None


_COLUMNS = (
    "call_id, run_id, seq, step, agent, model, kind, cache_key, request_hash, response_hash,"
    " prompt_tokens, completion_tokens, latency_s, cache_hit, cost, error, created_at"
)


class TranscriptStore(Closing):
    """Cache lookups and transcript rows in a tprompt database.

    Args:
        db: a path (a :class:`~tprompt.stores.db.Store` is opened for it, with
            its own connection, and closed with this object), or an open store
            to share: its connection and its lock (``EventLog.transcripts`` is
            the event log's).
        readonly: with a path, open it read-only.
    """

    def __init__(self, db: str | os.PathLike[str] | Store, *, readonly: bool = False) -> None:
        if isinstance(db, Store):
            self._store = db
            self._owned = False
        else:
            self._store = Store(db, readonly=readonly)
            self._owned = True
        self.path = self._store.path

    def close(self) -> None:
        """Close the database if this object opened it."""
        if self._owned:
            self._store.close()

    # -- cache -------------------------------------------------------------------------

    def lookup(self, keys: Iterable[str]) -> dict[str, CacheEntry]:
        """The cached answers among ``keys``."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, CacheEntry] = {}
        with self._store.reading() as conn:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for key, body, pt, ct, cost in conn.execute(
                    "SELECT c.cache_key, b.body, c.prompt_tokens, c.completion_tokens, c.cost"
                    f" FROM llm_cache c JOIN bodies b ON b.hash = c.response_hash WHERE c.cache_key IN ({marks})",
                    chunk,
                ):
                    found[key] = CacheEntry(body, pt, ct, cost)
        return found

    # -- claims: one process pays for a call, another that needs it waits ----------------------

    @property
    def claims(self) -> bool:
        """Whether calls are claimed here: a database file (an in-memory one has a single process)."""
        return self.path not in ("", ":memory:")

    def claim(self, keys: Sequence[str], me: Holder | None = None) -> tuple[list[str], list[str], dict[str, CacheEntry]]:
        """Claim the uncached ``keys`` this process is about to pay for, in one write transaction.

        Returns:
            ``(mine, theirs, cached)``: the keys claimed now (or already ours, or taken over from a
            holder that died), the keys another live process is paying for (wait for them with
            :meth:`settled`), and the keys answered since the caller looked (use these).
        """
        me = me or Holder.me()
        mine: list[str] = []
        theirs: list[str] = []
        with self._store.writing() as conn:
            if not has_table(conn, "call_claims"):  # a file another tprompt opened read-only before migrating
                return list(keys), [], {}
            cached = self.lookup(keys)  # the lock is re-entrant: read inside this transaction
            for key in keys:
                if key in cached:
                    continue
                row = conn.execute("SELECT pid, host, started FROM call_claims WHERE cache_key = ?", (key,)).fetchone()
                held = Holder(int(row[0]), str(row[1]), str(row[2])) if row else None
                if held is not None and held != me and holder_alive(held):
                    theirs.append(key)
                    continue
                conn.execute("INSERT OR REPLACE INTO call_claims (cache_key, pid, host, started) VALUES (?, ?, ?, ?)",
                             (key, me.pid, me.host, me.started))
                mine.append(key)
        return mine, theirs, cached

    def settled(self, keys: Sequence[str]) -> tuple[dict[str, CacheEntry], list[str]]:
        """Of keys another process claimed: ``(answered, released)``: the cached answers, and the keys whose
        claim is gone (its holder failed, died or gave up) with no answer. Keys in neither are still paid for."""
        cached = self.lookup(keys)
        released: list[str] = []
        with self._store.reading() as conn:
            for key in keys:
                if key in cached:
                    continue
                row = conn.execute("SELECT pid, host, started FROM call_claims WHERE cache_key = ?", (key,)).fetchone()
                if row is None or not holder_alive(Holder(int(row[0]), str(row[1]), str(row[2]))):
                    released.append(key)
        return cached, released

    def unclaim(self, keys: Sequence[str], me: Holder | None = None) -> None:
        """Give up this process's claims on ``keys`` (answered, failed or abandoned)."""
        if not keys or not self.claims:
            return
        me = me or Holder.me()
        with self._store.writing() as conn:
            if has_table(conn, "call_claims"):
                conn.executemany("DELETE FROM call_claims WHERE cache_key = ? AND pid = ? AND host = ? AND started = ?",
                                 [(k, me.pid, me.host, me.started) for k in keys])

    def record(self, calls: Sequence[NewCall], *, unclaim: Sequence[str] = ()) -> None:
        """Write the calls (bodies, cache entries of successful misses, transcript rows) in one transaction.

        ``unclaim``: this process's claims to give up in the same transaction (the calls just answered).
        """
        if not calls:
            self.unclaim(unclaim)
            return
        stamp = now_iso()
        bodies: dict[str, str] = {}
        cache_rows = []
        rows = []
        for call in calls:
            req_hash = body_hash(call.request)
            bodies[req_hash] = call.request
            resp_hash = None
            if call.response is not None:
                resp_hash = body_hash(call.response)
                bodies[resp_hash] = call.response
                if not call.cache_hit and call.error is None:
                    cache_rows.append(
                        (call.cache_key, call.kind, call.model, resp_hash, call.prompt_tokens or 0,
                         call.completion_tokens or 0, call.cost, stamp)
                    )
            rows.append(
                (call.call_id, call.run_id, call.seq, call.step, call.agent, call.model, call.kind, call.cache_key,
                 req_hash, resp_hash, call.prompt_tokens, call.completion_tokens, call.latency_s,
                 int(call.cache_hit), call.cost, call.error, stamp)
            )
        # A failed statement rolls the transaction back and is raised as a store error.
        with self._store.writing() as conn:
            conn.executemany("INSERT OR IGNORE INTO bodies (hash, body) VALUES (?, ?)", list(bodies.items()))
            conn.executemany(
                "INSERT OR IGNORE INTO llm_cache (cache_key, kind, model, response_hash, prompt_tokens,"
                " completion_tokens, cost, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                cache_rows,
            )
            conn.executemany(f"INSERT OR IGNORE INTO transcripts ({_COLUMNS}) VALUES ({','.join('?' * 17)})", rows)
            if unclaim and self.claims and has_table(conn, "call_claims"):
                me = Holder.me()
                conn.executemany("DELETE FROM call_claims WHERE cache_key = ? AND pid = ? AND host = ? AND started = ?",
                                 [(k, me.pid, me.host, me.started) for k in unclaim])

    # -- reading -----------------------------------------------------------------------

    def rows(
        self,
        segments: Sequence[tuple[str, int, int | None]],
        *,
        agent: str | None = None,
    ) -> list[TranscriptRow]:
        """Transcript rows of a history given as ``(run_id, first_seq, last_seq)`` segments.

        The last segment is the run itself: all its rows are included (also
        calls made before any seq was known). An ancestor segment contributes
        the calls made up to its fork point (``seq <= last_seq``).
        """
        result: list[TranscriptRow] = []
        with self._store.reading() as conn:
            for index, (run_id, _first, last) in enumerate(segments):
                sql = f"SELECT {_COLUMNS} FROM transcripts WHERE run_id = ?"
                params: list[Any] = [run_id]
                if last is not None and index < len(segments) - 1:
                    sql += " AND seq IS NOT NULL AND seq <= ?"
                    params.append(last)
                if agent:
                    sql += " AND agent = ?"
                    params.append(agent)
                sql += " ORDER BY created_at, rowid"
                result.extend(_row(r) for r in conn.execute(sql, params))
        return result

    def ancestor_rows(self, segments: Sequence[tuple[str, int | None]]) -> list[TranscriptRow]:
        """Calls of a fork's ancestors given as ``(run_id, last_seq)``: each up to its fork point, in rowid order."""
        result: list[TranscriptRow] = []
        with self._store.reading() as conn:
            for run_id, last in segments:
                sql = f"SELECT {_COLUMNS} FROM transcripts WHERE run_id = ?"
                params: list[Any] = [run_id]
                if last is not None:
                    sql += " AND seq IS NOT NULL AND seq <= ?"
                    params.append(last)
                result.extend(_row(r) for r in conn.execute(sql + " ORDER BY rowid", params))
        return result

    def rows_after(self, run_id: str, rowid: int) -> list[tuple[int, TranscriptRow]]:
        """``(rowid, row)`` of ``run_id``'s calls recorded after ``rowid``: what a poll has not seen yet."""
        with self._store.reading() as conn:
            return [(r[0], _row(r[1:])) for r in conn.execute(
                f"SELECT rowid, {_COLUMNS} FROM transcripts WHERE run_id = ? AND rowid > ? ORDER BY rowid",
                (run_id, rowid),
            )]

    def first_request_body(self, run_id: str, agent: str, model: str) -> str | None:
        """The request body of ``run_id``'s first call by ``agent`` to ``model`` (None if it made none)."""
        with self._store.reading() as conn:
            row = conn.execute(
                "SELECT b.body FROM transcripts t JOIN bodies b ON b.hash = t.request_hash"
                " WHERE t.run_id = ? AND t.agent = ? AND t.model = ? LIMIT 1",
                (run_id, agent, model),
            ).fetchone()
        return row[0] if row else None

    def spend(self, run_ids: Sequence[str]) -> list[tuple[str, str, int, int, int, float | None]]:
        """Paid calls of ``run_ids`` by (agent, stage): ``(agent, stage, calls, prompt tokens, completion tokens, USD)``.

        Only calls the model answered count (cache hits cost nothing again);
        the stage is the part of the step label before ``:``. USD is None when no call was priced.
        """
        if not run_ids:
            return []
        marks = ",".join("?" for _ in run_ids)
        sql = (
            "SELECT agent, CASE WHEN instr(coalesce(step, ''), ':') > 0 THEN substr(step, 1, instr(step, ':') - 1)"
            " ELSE coalesce(step, '') END AS stage, count(*), coalesce(sum(prompt_tokens), 0),"
            f" coalesce(sum(completion_tokens), 0), sum(cost) FROM transcripts WHERE run_id IN ({marks})"
            " AND cache_hit = 0 AND error IS NULL GROUP BY agent, stage ORDER BY agent, stage"
        )
        with self._store.reading() as conn:
            return [tuple(r) for r in conn.execute(sql, list(run_ids))]

    def call(self, call_id: str) -> TranscriptRow | None:
        """One row by its call id or a unique prefix of it."""
        with self._store.reading() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM transcripts WHERE call_id = ? OR call_id LIKE ? ESCAPE '\\' LIMIT 2",
                (call_id, call_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"),
            ).fetchall()
        exact = [r for r in rows if r[0] == call_id]
        if exact:
            return _row(exact[0])
        return _row(rows[0]) if len(rows) == 1 else None

    def body(self, hash_: str | None) -> str | None:
        """A stored body by hash."""
        if hash_ is None:
            return None
        with self._store.reading() as conn:
            row = conn.execute("SELECT body FROM bodies WHERE hash = ?", (hash_,)).fetchone()
        return row[0] if row else None


def _row(values: Sequence[Any]) -> TranscriptRow:
    values = list(values)
    values[13] = bool(values[13])
    return TranscriptRow(*values)
