"""Model calls survive kill -9: every finished call is in the cache before the next is awaited,
so a resume pays only for the calls that were in flight (issue 12, item 2)."""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path

from test_graph import start_run_process, tprompt

from tprompt.stores import EventLog


def _query(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        return conn.execute(sql).fetchall()


def test_kill_mid_batch_keeps_the_finished_calls(tmp_path: Path) -> None:
    db = tmp_path / "k.db"
    # One scoring batch of 8 examples takes 8 x 0.25 s: the kill lands inside it.
    proc = start_run_process(db, scorer="fake:delay=0.25", examples=8, steps=1, candidates=2, top_k=1,
                             test_examples=2)
    try:
        deadline = time.monotonic() + 120  # bounds a hang only
        while True:
            assert proc.poll() is None, "the run ended before the kill"
            assert time.monotonic() < deadline, "no scorer call was recorded"
            try:
                scored = _query(db, "SELECT count(*) FROM events WHERE type = 'candidate.scored'")[0][0]
                calls = _query(db, "SELECT count(*) FROM transcripts WHERE agent = 'scorer' AND cache_hit = 0")[0][0]
            except sqlite3.OperationalError:  # no database or schema yet
                scored = calls = 0
            if calls >= 3:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert scored == 0, "the kill was meant to land inside the first batch"
    paid_before = _query(db, "SELECT cache_key FROM transcripts WHERE cache_hit = 0 AND error IS NULL")
    cached = _query(db, "SELECT cache_key FROM llm_cache")
    assert len(paid_before) >= 3 and set(paid_before) <= set(cached)

    (run,) = EventLog(db).runs()
    tprompt(db, "resume", run.run_id, "--json")
    paid = _query(db, "SELECT cache_key, count(*) FROM transcripts WHERE cache_hit = 0 AND error IS NULL"
                      " GROUP BY cache_key HAVING count(*) > 1")
    assert paid == [], f"{len(paid)} calls were paid twice"
    hits = _query(db, "SELECT count(*) FROM transcripts WHERE cache_hit = 1 AND agent = 'scorer'")[0][0]
    assert hits >= len(paid_before)  # the resume took them from the cache
