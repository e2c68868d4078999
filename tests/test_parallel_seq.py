"""Parallel scoring files each candidate's calls under its own event's seq (issue 12, item 10).

Since the scorer and the evaluator are separate nodes (issue 10), the calls lead to the
scorer's ``candidate.answered`` event, so that is where they are filed."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from test_graph import run_in_process


def test_parallel_jobs_file_calls_under_their_own_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tprompt.config.specs.IN_PROCESS_KINDS", ("smollm2", "hf"))  # score like an API model
    db = tmp_path / "p.db"
    log, run_id = run_in_process(db, scorer="fake:delay=0.01", concurrency=3)
    scored = {e.seq: e.event for e in log.events(run_id) if e.type == "candidate.answered" and e.event.split == "train"}
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT t.seq, b.body FROM transcripts t JOIN bodies b ON b.hash = t.request_hash"
            " WHERE t.run_id = ? AND t.agent = 'scorer' AND t.step LIKE '%:%'", (run_id,)
        ).fetchall()
    training = [(seq, body) for seq, body in rows if seq in scored]
    assert len(training) == sum(len(e.answers) for e in scored.values())  # every training call is under one
    for seq, body in training:
        messages = json.loads(body)["messages"]
        assert any(scored[seq].text in content for _, content in messages), f"a call under seq {seq} is another's"
