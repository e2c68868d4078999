"""Prices and budgets: cost in transcripts, spend in `tprompt show`, --max-cost pauses and resume continues."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from tprompt.models.pricing import call_cost, price_for

SETTINGS = """
steps = 1
candidates = 2
examples = 4
test_examples = 4
proposer = "fake"
scorer = "fake"
prices = { fake = [1000.0, 2000.0] }   # USD per million tokens: a few cents a call
"""


def tprompt(db: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "tprompt.cli", "--db", str(db), *args],
                          capture_output=True, text=True, timeout=300)
    if check and done.returncode != 0:
        raise AssertionError(f"tprompt {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
    return done


def test_price_table() -> None:
    assert price_for("openai", "gpt-4o-mini-2024-07-18") == (0.15, 0.60)  # the longest prefix, not gpt-4o
    assert price_for("openai", "gpt-4o") == (2.50, 10.00)
    assert price_for("openai", "gpt-4o-mini", base_url="http://127.0.0.1:8000/v1") is None  # own server
    assert price_for("ollama", "llama3.1:8b") is None
    assert call_cost((1.0, 2.0), 1_000_000, 500_000) == 2.0


def test_max_cost_pauses_then_resume_with_more_finishes(tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text(SETTINGS)
    db = tmp_path / "t.db"
    paused = tprompt(db, "run", "--config", str(config), "--max-cost", "0.5", "--json")
    state = json.loads(paused.stdout)
    assert state["status"] == "paused", paused.stderr
    assert "reached --max-cost" in paused.stderr and f"tprompt --db {db} resume" in paused.stderr
    with sqlite3.connect(db) as conn:
        spent = conn.execute("SELECT sum(cost) FROM transcripts WHERE cache_hit = 0").fetchone()[0]
        reason = conn.execute("SELECT payload FROM events WHERE type = 'run.paused'").fetchone()[0]
        unpriced = conn.execute("SELECT count(*) FROM transcripts WHERE cache_hit = 0 AND cost IS NULL").fetchone()[0]
    assert spent >= 0.5 and unpriced == 0 and '"budget"' in reason

    again = tprompt(db, "resume", state["run_id"], "--max-cost", "0.5", "--json")
    assert json.loads(again.stdout)["status"] == "paused"  # still over: pauses at once, nothing paid
    done = tprompt(db, "resume", state["run_id"], "--max-cost", "1000", "--json")
    assert json.loads(done.stdout)["status"] == "completed"

    shown = json.loads(tprompt(db, "show", state["run_id"], "--json").stdout)
    spend = {(row["agent"], row["stage"]): row for row in shown["spend"]}
    assert {("proposer", "source"), ("scorer", "source"), ("scorer", "target"), ("scorer", "test")} <= set(spend)
    with sqlite3.connect(db) as conn:
        total = conn.execute("SELECT sum(cost) FROM transcripts WHERE cache_hit = 0").fetchone()[0]
    assert abs(sum(row["usd"] for row in shown["spend"]) - total) < 1e-9
    text = tprompt(db, "show", state["run_id"]).stdout
    assert "spend" in text and f"{total:.4f}" in text


def test_max_cost_must_be_positive(tmp_path: Path) -> None:
    done = tprompt(tmp_path / "t.db", "run", "--model", "fake", "--max-cost", "-1", check=False)
    assert done.returncode == 2 and "--max-cost must be a positive" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "t.db").exists()
