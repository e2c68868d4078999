"""The append-only event log: the single source of truth of every run.

A run's history is its ancestors' events up to each fork point, read through
(never copied), followed by its own. Seqs continue across a fork: a run forked
at seq N writes its own events from N+1, so a history is gapless from 1.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import os
import sqlite3
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from pydantic import ValidationError

from ..config import RunConfig
from ..errors import ConflictError, CorruptEvent, SeqOutOfRange, StoreError, UnknownRun
from .db import Closing, Store, has_table, now_iso
from .events import (
    EVENT_ADAPTER,
    EVENT_TYPES,
    STATUS_AFTER,
    UPCASTERS,
    AnyEvent,
    Event,
    RunCreated,
    RunForked,
    StoredEvent,
    event_key,
)

if TYPE_CHECKING:
    from .transcripts import TranscriptStore

@dataclass(frozen=True, slots=True)
class RunRow:
    """One row of the ``runs`` table."""

    run_id: str
    parent_run_id: str | None
    parent_seq: int | None
    status: str
    name: str | None
    created_at: str
    updated_at: str  # when ``status`` last changed (appends that keep it leave the row alone)


@dataclass(frozen=True, slots=True)
class Segment:
    """A slice of one run's own events that belongs to a history."""

    run_id: str
    first_seq: int
    last_seq: int | None  # None: to the end


#: How many runs' folds a log keeps (an experiment's process writes a few runs at a time).
_FOLDS_KEPT = 16


def new_run_id() -> str:
    return "r-" + uuid.uuid4().hex[:10]


def _require_seq(run_id: str, seq: int, last: int, refusal: str, *, hint: str) -> None:
    """Raise :class:`SeqOutOfRange` (``refusal`` says what cannot be done) unless 1 <= ``seq`` <= ``last``."""
    if not 1 <= seq <= last:
        raise SeqOutOfRange(f"run {run_id} has events 1..{last}; {refusal}", hint=hint, run_id=run_id, seq=seq)


class EventLog(Closing):
    """Append and read events of runs in one SQLite database.

    One instance per thread or process is the simple rule; its use is
    serialized by its store's lock, so sharing one across threads is safe.

    Args:
        path: a database path (its :class:`~tprompt.stores.db.Store`, in
            :attr:`store`, is opened here and closed with the log; ``readonly``
            ``timeout`` and ``create`` are for it), or an open store to share.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | Store = ":memory:",
        *,
        readonly: bool = False,
        timeout: float | None = None,
        create: bool = True,
    ) -> None:
        self.store = path if isinstance(path, Store) else Store(path, readonly=readonly, timeout=timeout, create=create)
        self._owned = self.store is not path
        self.path = self.store.path
        self.readonly = self.store.readonly
        # The store's own connection and lock: stores/ modules share them, nothing else sees them.
        self._conn: sqlite3.Connection = self.store._conn
        self._lock = self.store._lock
        # The fold of the runs this log wrote or folded last (run id -> state at its last seq): an append
        # folds only its own events onto it to keep the run's summary row.
        self._folded: OrderedDict[str, RunState] = OrderedDict()

    @functools.cached_property
    def transcripts(self) -> TranscriptStore:
        """The LLM cache and transcripts in this log's database, on its connection and lock."""
        from .transcripts import TranscriptStore

        return TranscriptStore(self.store)

    # -- lifecycle ---------------------------------------------------------------

    def close(self) -> None:
        """Close the database if this log opened it."""
        if self._owned:
            self.store.close()

    # -- runs ------------------------------------------------------------------------

    def create_run(
        self,
        created: RunCreated,
        *,
        run_id: str | None = None,
        event_id: str | None = None,
    ) -> str:
        """Create a run whose first event (seq 1) is ``created``; returns its id.

        Creating the same ``run_id`` with the same ``event_id`` again is a no-op.
        """
        run_id = run_id or new_run_id()
        event_id = event_id or event_key(run_id, 1, created)
        with self.store.writing():
            row = self._conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                stamp = now_iso()
                self._conn.execute(
                    "INSERT INTO runs (run_id, parent_run_id, parent_seq, status, name, created_at, updated_at)"
                    " VALUES (?, NULL, NULL, 'created', ?, ?, ?)",
                    (run_id, created.name, stamp, stamp),
                )
            self._append_locked(run_id, [created], expected_seq=None, event_ids=[event_id], base=RunState(run_id=run_id))
        return run_id

    def fork(
        self,
        parent_run_id: str,
        at_seq: int,
        *,
        config: RunConfig,
        target_task: str,
        from_prompt_id: str | None = None,
        run_id: str | None = None,
        name: str | None = None,
        events: Sequence[Event] = (),
    ) -> str:
        """Start a new run whose history is the parent's up to ``at_seq``.

        Nothing is copied: the cost is one row and one event, whatever the
        parent's length. ``events`` are appended after the ``run.forked``
        event in the same transaction (a fork is created whole or not at all).

        Raises:
            UnknownRun: no such parent.
            SeqOutOfRange: ``at_seq`` is not in the parent's history.
        """
        run_id = run_id or new_run_id()
        with self.store.writing():
            parent_last = self._last_seq_locked(parent_run_id)
            _require_seq(parent_run_id, at_seq, parent_last, f"cannot fork at seq {at_seq}",
                         hint="pick a seq from `tprompt events RUN`")
            stamp = now_iso()
            self._conn.execute(
                "INSERT INTO runs (run_id, parent_run_id, parent_seq, status, name, created_at, updated_at)"
                " VALUES (?, ?, ?, 'created', ?, ?, ?)",
                (run_id, parent_run_id, at_seq, name, stamp, stamp),
            )
            forked = RunForked(
                parent_run_id=parent_run_id,
                parent_seq=at_seq,
                from_prompt_id=from_prompt_id,
                config=config,
                target_task=target_task,
            )
            written = [forked, *events]
            ids = [event_key(run_id, at_seq + 1 + i, ev) for i, ev in enumerate(written)]
            # No summary row: it would take a fold of the parent's history (a fork costs one row and one
            # event); `runs` folds a run whose row is behind.
            self._append_locked(run_id, written, expected_seq=at_seq + 1, event_ids=ids, base=None)
        return run_id

    def run(self, run_id: str) -> RunRow:
        """The ``runs`` row of ``run_id`` (a unique prefix of it is accepted)."""
        with self.store.reading():
            run_id = self.resolve(run_id)
            row = self._conn.execute(
                "SELECT run_id, parent_run_id, parent_seq, status, name, created_at, updated_at"
                " FROM runs WHERE run_id = ?",
                (run_id,),
            ).fetchone()
        return RunRow(*row)

    def change_stamp(self) -> tuple[Any, ...]:
        """Changes whenever a run is added or written: (runs, last status change, newest event)."""
        with self.store.reading():
            runs, updated = self._conn.execute("SELECT count(*), max(updated_at) FROM runs").fetchone()
            # The newest rowid, not count(*): an index lookup, not a scan of every event.
            (events,) = self._conn.execute("SELECT max(rowid) FROM events").fetchone()
        return (runs, updated, events)

    def runs(self) -> list[RunRow]:
        """Every run, oldest first."""
        with self.store.reading():
            rows = self._conn.execute(
                "SELECT run_id, parent_run_id, parent_seq, status, name, created_at, updated_at"
                " FROM runs ORDER BY created_at, run_id"
            ).fetchall()
        return [RunRow(*row) for row in rows]

    def resolve(self, run_id: str) -> str:
        """The full id of a run given its id or a unique prefix of it.

        Raises:
            UnknownRun: no run, or more than one, matches.
        """
        with self.store.reading():
            if self._conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone():
                return run_id
            escaped = run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            matches: list[str] = [
                r[0]
                for r in self._conn.execute(
                    "SELECT run_id FROM runs WHERE run_id LIKE ? ESCAPE '\\' LIMIT 3", (escaped + "%",)
                )
            ]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise UnknownRun(
                f"no run {run_id!r} in {self.path}",
                hint="`tprompt runs` lists the runs",
                run_id=run_id,
            )
        raise UnknownRun(
            f"{run_id!r} matches several runs ({', '.join(matches)}, ...)",
            hint="give more of the run id",
            run_id=run_id,
        )

    # -- appending ---------------------------------------------------------------------

    def append(
        self,
        run_id: str,
        events: Sequence[Event],
        *,
        expected_seq: int | None = None,
        event_ids: Sequence[str | None] | None = None,
        base: RunState | None = None,
    ) -> list[StoredEvent]:
        """Append ``events`` to ``run_id`` in one transaction: the one way an event is written.

        Args:
            expected_seq: the seq the first new event must get; if another
                writer got there first, :class:`ConflictError` is raised and
                nothing is written. With it, each event's idempotency key is
                :func:`~tprompt.stores.events.event_key` of its seq (the same
                event appended again at the same seq is skipped).
            event_ids: idempotency keys instead (an event whose id is stored
                already is skipped); without them or ``expected_seq``, fresh ids.
            base: the run's state before these events (the caller's fold), so
                the run's summary row is kept without folding its history.

        The run's ``runs.status`` and its ``run_summaries`` row follow in the
        same transaction: the row is written whenever the log knows the run's
        state before the append (``base``, or its own last fold of the run).

        Returns:
            The events written (duplicates skipped), with their envelopes.
        """
        if event_ids is not None and len(event_ids) != len(events):
            raise ValueError("event_ids must match events one to one")
        derived = event_ids is None and expected_seq is not None
        if derived:
            assert expected_seq is not None
            event_ids = [event_key(run_id, expected_seq + i, ev) for i, ev in enumerate(events)]
        with self.store.writing():
            return self._append_locked(run_id, events, expected_seq=expected_seq, event_ids=event_ids, base=base,
                                       same_payload=derived)

    def append_after(self, state: RunState, events: Sequence[Event]) -> tuple[list[StoredEvent], RunState]:
        """:meth:`append` ``events`` right after ``state``'s last event; the events written and the state after them."""
        stored = self.append(state.run_id, events, expected_seq=state.last_seq + 1, base=state)
        if not stored:
            return stored, state
        after = self._folded.get(state.run_id)
        assert after is not None and after.last_seq == stored[-1].seq  # append just folded them
        return stored, after

    def _append_locked(
        self,
        run_id: str,
        events: Sequence[Event],
        *,
        expected_seq: int | None,
        event_ids: Sequence[str | None] | None,
        base: RunState | None,
        same_payload: bool = False,
    ) -> list[StoredEvent]:
        if event_ids is None:
            # Fresh random ids: none can be stored already, so there is nothing to look up.
            fresh = [(uuid.uuid4().hex, ev) for ev in events]
        else:
            ids = [e or uuid.uuid4().hex for e in event_ids]
            if len(set(ids)) != len(ids):
                raise ValueError("event_ids must be distinct within one append")
            existing = self._existing_ids(ids)
            if same_payload:
                # A key made of (run, seq, type) is the same for another writer's different event at that
                # seq: only the very same event is skipped, anything else lost the race.
                for offset, (eid, ev) in enumerate(zip(ids, events)):
                    if eid in existing and existing[eid] != ev.model_dump_json():
                        seq = (expected_seq or 0) + offset
                        raise ConflictError(f"run {run_id}: seq {seq} was taken by another writer",
                                            hint="reload the run and retry", run_id=run_id, seq=seq)
            fresh = [(eid, ev) for eid, ev in zip(ids, events) if eid not in existing]
        if not fresh:
            return []
        last = self._last_seq_locked(run_id)
        if expected_seq is not None and expected_seq != last + 1:
            raise ConflictError(
                f"run {run_id}: expected to write seq {expected_seq}, but the next seq is {last + 1}",
                hint="another writer appended first; reload the run and retry",
                run_id=run_id,
                seq=expected_seq,
            )
        stamp = now_iso()
        rows = []
        stored = []
        for offset, (eid, ev) in enumerate(fresh, start=1):
            seq = last + offset
            rows.append((run_id, seq, eid, ev.type, ev.schema_version, ev.model_dump_json(), stamp))
            stored.append(
                StoredEvent(
                    run_id=run_id,
                    seq=seq,
                    event_id=eid,
                    schema_version=ev.schema_version,
                    created_at=datetime.fromisoformat(stamp),
                    event=cast(AnyEvent, ev),  # every Event subclass is one of AnyEvent's
                )
            )
        try:
            self._conn.executemany(
                "INSERT INTO events (run_id, seq, event_id, type, schema_version, payload, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        except sqlite3.IntegrityError as exc:
            raise ConflictError(
                f"run {run_id}: seq {last + 1} was taken by another writer",
                hint="reload the run and retry",
                run_id=run_id,
                seq=last + 1,
            ) from exc
        status = None
        for _, ev in fresh:
            status = STATUS_AFTER.get(type(ev), status)
        # The runs row changes with the run's status only: touching it on every append
        # made each commit write one more page (readers see new events by their rowid).
        if status is not None:
            self._conn.execute(
                "UPDATE runs SET status = ?, updated_at = ? WHERE run_id = ?", (status, stamp, run_id)
            )
        self._keep_summary(run_id, last, stored, base)
        return stored

    def _keep_summary(self, run_id: str, last: int, stored: list[StoredEvent], base: RunState | None) -> None:
        """Write the run's summary row after ``stored`` (in the append's transaction) when its prior state is known."""
        from .projection import fold
        from .summary import summarize

        known = base if base is not None and base.last_seq == last else self._folded.get(run_id)
        if known is None or known.last_seq != last or known.run_id != run_id:
            self._folded.pop(run_id, None)
            return
        after = fold(stored, state=known)  # one state copy per append, not per event
        self._conn.execute(
            "INSERT OR REPLACE INTO run_summaries (run_id, seq, summary) VALUES (?, ?, ?)",
            (run_id, after.last_seq, summarize(after, "").to_json()),
        )
        self._remember(after)

    def known_state(self, run_id: str) -> RunState | None:
        """This log's own fold of ``run_id`` (kept by its appends and :meth:`state`) if no event was
        appended since, by any writer; None otherwise (then :meth:`state` folds it)."""
        known = self._folded.get(run_id)
        return known if known is not None and known.last_seq == self.last_seq(run_id) else None

    def _remember(self, state: RunState) -> None:
        self._folded[state.run_id] = state
        self._folded.move_to_end(state.run_id)
        while len(self._folded) > _FOLDS_KEPT:
            self._folded.popitem(last=False)

    def summary_rows(self) -> list[tuple[RunRow, int, str | None]]:
        """Every run, oldest first, with its last seq and its stored summary row (JSON, or None).

        One statement; each run's last seq is an index lookup, so the cost does
        not grow with the runs' lengths.
        """
        with self.store.reading():
            # A reader of a file from before migration 6 has no summaries: every run is then folded.
            summaries = "run_summaries" if has_table(self._conn, "run_summaries") else "(SELECT NULL AS run_id, NULL AS summary, NULL AS seq)"
            rows = self._conn.execute(
                "SELECT r.run_id, r.parent_run_id, r.parent_seq, r.status, r.name, r.created_at, r.updated_at,"
                " coalesce((SELECT max(seq) FROM events e WHERE e.run_id = r.run_id), r.parent_seq, 0),"
                " s.summary, s.seq"
                f" FROM runs r LEFT JOIN {summaries} s ON s.run_id = r.run_id ORDER BY r.created_at, r.run_id"
            ).fetchall()
        return [(RunRow(*r[:7]), int(r[7]), r[8] if r[9] == r[7] else None) for r in rows]

    def _existing_ids(self, ids: Sequence[str]) -> dict[str, str]:
        """The stored ones of ``ids``, each with its stored payload."""
        found: dict[str, str] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(
                (r[0], r[1])
                for r in self._conn.execute(f"SELECT event_id, payload FROM events WHERE event_id IN ({marks})", chunk)
            )
        return found

    # -- reading ----------------------------------------------------------------------------

    def last_seq(self, run_id: str) -> int:
        """The seq of the last event in ``run_id``'s history (0 if none)."""
        with self.store.reading():
            return self._last_seq_locked(run_id)

    def _last_seq_locked(self, run_id: str) -> int:
        # One statement: the run's own last seq, else its fork point (0 for a new run).
        row = self._conn.execute(
            "SELECT coalesce((SELECT max(seq) FROM events WHERE run_id = ?1), parent_seq, 0) FROM runs WHERE run_id = ?1",
            (run_id,),
        ).fetchone()
        if row is None:
            raise UnknownRun(f"no run {run_id!r} in {self.path}", hint="`tprompt runs` lists the runs", run_id=run_id)
        return int(row[0])

    def lineage(self, run_id: str) -> list[Segment]:
        """The segments of ``run_id``'s history, oldest ancestor first."""
        segments: list[Segment] = []
        upto: int | None = None
        current: str | None = run_id
        seen: set[str] = set()
        with self.store.reading():
            while current is not None:
                if current in seen:  # pragma: no cover - only a hand-edited file could loop
                    raise StoreError(f"run {run_id}: its fork lineage loops at {current}")
                seen.add(current)
                row = self._conn.execute(
                    "SELECT parent_run_id, parent_seq FROM runs WHERE run_id = ?", (current,)
                ).fetchone()
                if row is None:
                    raise UnknownRun(
                        f"no run {current!r} in {self.path}", hint="`tprompt runs` lists the runs", run_id=current
                    )
                parent, parent_seq = row
                segments.append(Segment(current, (parent_seq or 0) + 1, upto))
                # A fork of a fork made below the grandparent's fork point sees
                # only the ancestors' events up to the lowest fork point so far.
                if parent_seq is not None:
                    upto = parent_seq if upto is None else min(upto, parent_seq)
                current = parent
        segments.reverse()
        return segments

    def events(self, run_id: str, *, upto: int | None = None, after: int = 0) -> Iterator[StoredEvent]:
        """The events of ``run_id``'s history with ``after < seq <= upto``, in order.

        Raises:
            CorruptEvent: a stored payload cannot be read; names the run and seq.
        """
        for row in self.raw_events(run_id, upto=upto, after=after):
            yield decode_row(*row)

    def raw_events(
        self, run_id: str, *, upto: int | None = None, after: int = 0
    ) -> Iterator[tuple[str, int, str, str, int, str, str]]:
        """Rows ``(run_id, seq, event_id, type, schema_version, payload, created_at)`` undecoded."""
        for seg in self.lineage(run_id):
            lo = max(seg.first_seq, after + 1)
            hi = seg.last_seq
            if upto is not None:
                hi = upto if hi is None else min(hi, upto)
            if hi is not None and hi < lo:
                continue
            sql = (
                "SELECT run_id, seq, event_id, type, schema_version, payload, created_at"
                " FROM events WHERE run_id = ? AND seq >= ?"
            )
            params: list[Any] = [seg.run_id, lo]
            if hi is not None:
                sql += " AND seq <= ?"
                params.append(hi)
            sql += " ORDER BY seq"
            with self.store.reading() as conn:
                rows = conn.execute(sql, params).fetchall()
            yield from rows

    def check_seq(self, run_id: str, seq: int) -> None:
        """Raise :class:`SeqOutOfRange` unless ``seq`` is in ``run_id``'s history."""
        _require_seq(run_id, seq, self.last_seq(run_id), f"there is no seq {seq}", hint="`tprompt events RUN` lists them")

    def state(self, run_id: str, *, upto: int | None = None) -> RunState:
        """The run's state after the event ``upto`` (the last one by default)."""
        from .projection import fold

        run_id = self.resolve(run_id)
        if upto is not None:
            self.check_seq(run_id, upto)
        with gc_paused():
            state = fold(self.events(run_id, upto=upto), run_id=run_id)
        if upto is None:
            self._remember(state)
        return state


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    # Folding a long run allocates ~10 objects per event and keeps most of
    # them; the cycle collector would rescan them again and again (a third of
    # the time for 100,000 events). The fold makes no reference cycles, so
    # refcounting frees everything; the collector is back on right after.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def decode_row(
    run_id: str, seq: int, event_id: str, type_: str, schema_version: int, payload: str, created_at: str
) -> StoredEvent:
    """Validate one stored row into a :class:`StoredEvent`, upcasting old payloads."""
    cls = EVENT_TYPES.get(type_)
    if cls is None:
        raise CorruptEvent(
            f"run {run_id} seq {seq}: unknown event type {type_!r}",
            hint="written by a newer tprompt? upgrade it",
            run_id=run_id,
            seq=seq,
        )
    current = cls.schema_version
    upcast_type = type_  # what the payload's type is once brought up to date (an upcaster may split a class)
    try:
        if schema_version == current:
            # The row's type picks the class: no union dispatch per event.
            event = cls.model_validate_json(payload)
        elif schema_version > current:
            raise CorruptEvent(
                f"run {run_id} seq {seq}: {type_} has schema version {schema_version}, this tprompt reads up to {current}",
                hint="upgrade tprompt",
                run_id=run_id,
                seq=seq,
            )
        else:
            data = json.loads(payload)
            if not isinstance(data, dict) or data.get("type") != type_:
                said = data.get("type") if isinstance(data, dict) else None
                raise CorruptEvent(
                    f"run {run_id} seq {seq}: payload says {said!r} but the row says {type_!r}",
                    run_id=run_id, seq=seq,
                )
            for version in range(schema_version, current):
                upcast = UPCASTERS.get((type_, version))
                if upcast is None:
                    raise CorruptEvent(
                        f"run {run_id} seq {seq}: no upcaster for {type_} v{version}", run_id=run_id, seq=seq
                    )
                data = upcast(data)
            upcast_type = data.get("type", type_)
            event = EVENT_ADAPTER.validate_python(data)
    except (ValidationError, ValueError) as exc:
        first = str(exc).splitlines()[0]
        said = _payload_type(payload)
        if said is not None and said != type_:
            raise CorruptEvent(
                f"run {run_id} seq {seq}: payload says {said!r} but the row says {type_!r}", run_id=run_id, seq=seq
            ) from exc
        detail, hint = _invalid_payload(exc, first)
        raise CorruptEvent(
            f"run {run_id} seq {seq}: stored {type_} payload is invalid ({detail})", hint=hint, run_id=run_id, seq=seq
        ) from exc
    if event.type != upcast_type:
        raise CorruptEvent(
            f"run {run_id} seq {seq}: payload says {event.type!r} but the row says {type_!r}", run_id=run_id, seq=seq
        )
    return StoredEvent(
        run_id=run_id,
        seq=seq,
        event_id=event_id,
        schema_version=schema_version,
        created_at=datetime.fromisoformat(created_at),
        event=cast(AnyEvent, event),
    )


def _invalid_payload(exc: ValueError, first: str) -> tuple[str, str]:
    """What is wrong with a stored payload (the first field pydantic names), and what to do."""
    if not isinstance(exc, ValidationError) or not exc.errors():
        return first, "the file was edited or damaged; other runs are still readable"
    error = exc.errors()[0]
    loc = [str(p) for p in error.get("loc", ())]
    detail = f"{'.'.join(loc) or 'payload'}: {error.get('msg', first)}"
    if error.get("input", ...) is None and any(p in ("weights", "prices") for p in loc):
        # Before weights and prices had to be finite, an inf or NaN was stored as JSON null.
        return f"{'.'.join(loc)} is null", (
            "the run was created with a weight or price of inf or NaN, which cannot be read back; "
            "start it again with finite values; other runs are still readable"
        )
    return detail, "the file was edited or damaged; other runs are still readable"


def _payload_type(payload: str) -> str | None:
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    return data.get("type") if isinstance(data, dict) else None


from .projection import RunState  # noqa: E402  (circular: projection imports events only)
