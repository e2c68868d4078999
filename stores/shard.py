"""Shards: one run's rows as a self-contained database file, shipped between machines as bytes.

A cell that runs on another machine (``experiments/ray_cells.py``) writes its
run into a *shard*, a tprompt database of its own on that machine's local disk.
The driver makes the shard's first content (:func:`extract`: the run, its
ancestors, its transcripts and the cache rows and bodies they reference, out of
the experiment's database) and takes back what the shard has written
(:func:`absorb`, the lossless, idempotent, prefix-extending
:func:`tprompt.stores.merge.merge_into`). In between the shard is copied
consistently (:func:`snapshot`, SQLite's backup API) whenever it changed
(:func:`stamp`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from .db import Store


def stamp(store: Store) -> tuple[Any, ...]:
    """Changes whenever the shard gets an event or a transcript row (both are append-only)."""
    with store.reading() as conn:
        (events,) = conn.execute("SELECT max(rowid) FROM events").fetchone()
        (calls,) = conn.execute("SELECT max(rowid) FROM transcripts").fetchone()
    return (events, calls)


def snapshot(store: Store) -> bytes:
    """A consistent copy of the whole database file, as bytes (readers and the writer go on)."""
    with tempfile.TemporaryDirectory(prefix="tprompt-snapshot-") as tmp:
        path = Path(tmp) / "snapshot.db"
        store.backup(path)
        return path.read_bytes()


def extract(source: str | os.PathLike[str], run_id: str) -> bytes:
    """``run_id``'s rows in ``source`` (with its ancestors, transcripts, bodies and cache rows) as a database file's bytes."""
    from .merge import merge_into

    with tempfile.TemporaryDirectory(prefix="tprompt-extract-") as tmp:
        path = Path(tmp) / "extract.db"
        with Store(path) as dst:
            merge_into(dst, Path(source), run_ids={run_id})
            return snapshot(dst)


def absorb(dst: Store, data: bytes, run_id: str) -> Any:
    """Merge a shard's bytes (a :func:`snapshot`) into ``dst``; the merge's counts."""
    from .merge import merge_into

    with tempfile.TemporaryDirectory(prefix="tprompt-absorb-") as tmp:
        path = Path(tmp) / "shard.db"
        path.write_bytes(data)
        return merge_into(dst, path, run_ids={run_id})


__all__ = ("absorb", "extract", "snapshot", "stamp")
