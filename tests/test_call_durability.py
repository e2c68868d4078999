"""Model calls survive kill -9: every finished call is in the cache before the next is awaited,
so a resume pays only for the calls that were in flight (issue 12, item 2)."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

from test_graph import start_run_process, tprompt, wait_for_row

from tprompt.stores import EventLog


def _query(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        return conn.execute(sql).fetchall()


def test_kill_mid_batch_keeps_the_finished_calls(tmp_path: Path) -> None:
    db = tmp_path / "k.db"
    gate = tmp_path / "gate"
    # The scorer's first 3 requests are answered; the 4th waits at the gate (a file not there yet), so the
    # process is held inside its first batch of 8 for as long as the test needs, whatever the machine's load.
    proc = start_run_process(db, scorer=f"fake:gate={gate},gate_after=3", examples=8, steps=1, candidates=2,
                             top_k=1, test_examples=2)
    try:
        wait_for_row(db, "SELECT 1 FROM transcripts WHERE agent = 'scorer' AND cache_hit = 0 "
                         "HAVING count(*) >= 3", proc)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    scored = _query(db, "SELECT count(*) FROM events WHERE type = 'candidate.scored'")[0][0]
    assert scored == 0, "the kill was meant to land inside the first batch"
    gate.touch()  # the resumed run's calls pass
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
