"""Model calls survive kill -9: every finished call is in the cache before the next is awaited,
so a resume pays only for the calls that were in flight (issue 12, item 2)."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

from test_graph import start_run_process, tprompt, wait_for_row

from tprompt.stores import EventLog

#: Scorer requests answered before the rest of the first batch is held at the gate.
ANSWERED = 3


def _query(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        return conn.execute(sql).fetchall()


def test_kill_mid_batch_keeps_the_finished_calls(tmp_path: Path) -> None:
    db, gate = tmp_path / "k.db", tmp_path / "gate"
    # The scorer's first 3 requests are answered; the 4th of the first batch (8 examples) waits at the gate, a
    # file that does not exist until after the kill: the process is held inside that batch, on any machine.
    proc = start_run_process(db, scorer=f"fake:gate={gate},gate_after={ANSWERED}", examples=8, steps=1,
                             candidates=2, top_k=1, test_examples=2)
    try:
        # The kill waits on state: the 3rd paid scorer call's transcript row (the wait's timeout bounds a hang only).
        wait_for_row(db, f"SELECT 1 FROM transcripts WHERE agent = 'scorer' AND cache_hit = 0 "
                         f"LIMIT 1 OFFSET {ANSWERED - 1}", proc)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert _query(db, "SELECT count(*) FROM events WHERE type = 'candidate.scored'") == [(0,)], \
        "the kill was meant to land inside the first batch"
    paid_before = _query(db, "SELECT cache_key FROM transcripts WHERE cache_hit = 0 AND error IS NULL")
    cached = _query(db, "SELECT cache_key FROM llm_cache")
    assert len(paid_before) == ANSWERED and set(paid_before) <= set(cached)

    gate.touch()  # the resumed run's calls pass
    (run,) = EventLog(db).runs()
    tprompt(db, "resume", run.run_id, "--json")
    paid = _query(db, "SELECT cache_key, count(*) FROM transcripts WHERE cache_hit = 0 AND error IS NULL"
                      " GROUP BY cache_key HAVING count(*) > 1")
    assert paid == [], f"{len(paid)} calls were paid twice"
    hits = _query(db, "SELECT count(*) FROM transcripts WHERE cache_hit = 1 AND agent = 'scorer'")[0][0]
    assert hits >= len(paid_before)  # the resume took them from the cache
