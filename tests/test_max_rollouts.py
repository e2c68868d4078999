"""``--max-rollouts``: the run pauses before its scorer calls on training examples would pass the budget,
keeps every answer it paid for, and resumes to the events of a run never paused, paying no call twice."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tprompt.graph import Runner, comparable_events, create_run, make_config
from tprompt.graph.resources import ExecutionOptions
from tprompt.graph.rules import rollouts_used
from tprompt.stores import EventLog
from tprompt.stores.events import CandidateAnswered, RunPaused

# One source task: step 0 scores the original on 4 examples (4 rollouts), each later step 3 candidates x 4.
SMALL = dict(source_tasks=["ai2_science"], target_task="arc_challenge", proposer="fake", scorer="fake", steps=2,
             candidates=3, top_k=2, examples=4, test_examples=5, mode="generate")


def _calls(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM transcripts").fetchone()[0]


def _train_calls(log: EventLog, run_id: str) -> int:
    return sum(se.event.scorer_calls for se in log.events(run_id)
               if isinstance(se.event, CandidateAnswered) and se.event.split == "train")


@pytest.mark.parametrize(("budget", "used"), [(12, 12), (10, 8), (4, 4)])
def test_the_run_pauses_at_the_budget_and_resumes_to_the_same_events(tmp_path: Path, budget: int, used: int) -> None:
    whole = EventLog(tmp_path / "whole.db")
    ref = create_run(whole, make_config(SMALL))
    Runner(whole, ref).run()

    db = tmp_path / "paused.db"
    log = EventLog(db)
    run_id = create_run(log, make_config(SMALL))
    runner = Runner(log, run_id, options=ExecutionOptions(max_rollouts=budget))
    state = runner.run()
    assert state.status == "paused" and runner.pause_reason == "rollouts"
    # Exactly the budget when the jobs (4 rollouts each) fill it; never past it; every answer recorded.
    assert rollouts_used(state) == _train_calls(log, run_id) == used
    last = list(log.events(run_id))[-1].event
    assert isinstance(last, RunPaused) and last.reason == "rollouts"
    before = _calls(db)

    again = Runner(log, run_id, options=ExecutionOptions(max_rollouts=budget)).run()  # the same budget: nothing more to do
    assert again.status == "paused" and rollouts_used(again) == used and _calls(db) == before

    done = Runner(log, run_id).run()
    assert done.status == "completed"
    assert comparable_events(log, run_id) == comparable_events(whole, ref)
    assert _calls(db) == _calls(tmp_path / "whole.db")  # no call paid twice


def test_the_cli_pauses_and_says_how_to_continue(tmp_path: Path) -> None:
    env = {**os.environ, "TPROMPT_DB": str(tmp_path / "t.db")}
    args = ["--source", "ai2_science", "--target", "arc_challenge", "--model", "fake", "--steps", "2",
            "--candidates", "3", "--examples", "4", "--test-examples", "5", "--mode", "generate"]
    proc = subprocess.run([sys.executable, "-m", "tprompt.cli", "run", "--json", *args, "--max-rollouts", "12"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["status"] == "paused"
    hint = f"tprompt --db {tmp_path / 't.db'} resume {data['run_id']} --max-rollouts N"
    assert "12 rollouts" in proc.stderr and hint in proc.stderr
    resumed = subprocess.run([sys.executable, "-m", "tprompt.cli", "resume", data["run_id"], "--json",
                              "--max-rollouts", "1000"], capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "completed"
    bad = subprocess.run([sys.executable, "-m", "tprompt.cli", "run", *args, "--max-rollouts", "0"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode != 0 and "--max-rollouts must be a positive number" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_the_budget_is_planned_on_the_rows_a_task_has(tmp_path: Path) -> None:
    # 30 rows split 6 train / 24 test: every job answers 6 rows, not --examples 16.
    rows = [{"question": f"Her birthday is on day {i} of April, 1995.", "reference": f"1995-04-{i:02d}"}
            for i in range(1, 31)]
    task = tmp_path / "dates.jsonl"
    task.write_text("".join(json.dumps(r) + "\n" for r in rows))
    log = EventLog(tmp_path / "t.db")
    config = make_config(dict(source_tasks=[], transfer=False, target_task=str(task), proposer="fake", scorer="fake",
                              steps=2, candidates=3, examples=16, test_examples=5))
    run_id = create_run(log, config)
    runner = Runner(log, run_id, options=ExecutionOptions(max_rollouts=10))
    state = runner.run()
    # was: paused at 0 rollouts, the original's 6-row job planned as 16 calls
    assert state.status == "paused" and runner.pause_reason == "rollouts"
    assert rollouts_used(state) == _train_calls(log, run_id) == 6
    state = Runner(log, run_id, options=ExecutionOptions(max_rollouts=12)).run()
    assert state.status == "paused" and rollouts_used(state) == 12  # the original and one 6-row candidate
    assert Runner(log, run_id, options=ExecutionOptions(max_rollouts=6 + 2 * 3 * 6)).run().status == "completed"


def test_optimize_takes_the_budgets_of_run(tmp_path: Path) -> None:
    """``optimize(max_rollouts=)`` pauses where ``run --max-rollouts`` does; a bad budget writes nothing."""
    from tprompt import optimize

    db = tmp_path / "api.db"
    cfg = {k: v for k, v in SMALL.items() if k not in ("source_tasks", "target_task")}
    state = optimize(db, source=["ai2_science"], target="arc_challenge", max_rollouts=10, **cfg)
    assert state.status == "paused" and rollouts_used(state) == 8
    log = EventLog(db)
    assert Runner(log, state.run_id).run().status == "completed"

    with pytest.raises(Exception, match="--max-rollouts must be a positive number"):
        optimize(tmp_path / "bad.db", target="arc_challenge", max_rollouts=0, **cfg)
    with pytest.raises(Exception, match="--max-cost must be a positive number"):
        optimize(tmp_path / "bad.db", target="arc_challenge", max_cost=-1.0, **cfg)
    assert not (tmp_path / "bad.db").exists()
