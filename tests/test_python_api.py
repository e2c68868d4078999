"""tprompt as a framework (issue 10): the Python API and the runnable critic-node example."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from test_graph import tprompt

import tprompt as tp
from tprompt.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
ROWS = [{"question": f"What is {a} + {b}?", "choices": [str(a + b), str(a + b + 1), str(a + b + 2)], "answer": str(a + b)}
        for a, b in [(1, 2), (2, 3), (3, 4), (4, 5), (5, 6), (6, 7)]]


def test_critic_node_example_runs_and_leaves_an_ordinary_run(tmp_path: Path) -> None:
    db = tmp_path / "critic.db"
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "critic_node.py"), str(db)],
                          capture_output=True, text=True, timeout=300, check=True)
    assert "completed" in done.stdout
    (run,) = json.loads(tprompt(db, "runs", "--json").stdout)
    events = json.loads(tprompt(db, "events", run["run_id"], "--json").stdout)
    types = [e["type"] for e in events]
    revised = [e for e in events if e["type"] == "step.revised"]
    assert len(revised) == 2 and all(e["payload"]["by"] == "critic" for e in revised)
    # The critic sits between propose and score: each revision follows a proposal and precedes the answers.
    for e in revised:
        i = types.index("step.revised", events.index(e))
        assert types[i - 1] == "step.proposed" and types[i + 1] == "candidate.answered"
    with sqlite3.connect(db) as conn:
        critic_calls = conn.execute("SELECT count(*) FROM transcripts WHERE agent = 'critic'").fetchone()[0]
    assert critic_calls == sum(len(e["payload"]["call_ids"]) for e in revised) > 0
    assert "best target" in tprompt(db, "show", run["run_id"]).stdout


def test_optimize_with_python_tasks_and_a_custom_objective(tmp_path: Path) -> None:
    source = tp.task_from_records("sums", ROWS, description="Add the numbers.")
    target = tp.task_from_records("sums2", ROWS[::-1], description="Add the two numbers.")
    seen: list[str] = []
    state = tp.optimize(tmp_path / "t.db", source=[source], target=target, model="fake", steps=1, candidates=2,
                        examples=2, test_examples=2, mode="generate", objective=lambda m: m["accuracy"] or 0.0,
                        on_update=lambda u: seen.append(type(u).__name__))
    assert state.status == "completed" and state.source_tasks == ("sums",) and state.target_task == "sums2"
    assert all(r.objective == (r.metrics["accuracy"] or 0.0) for r in state.tested.values())
    assert "EventsAppended" in seen and "Progress" in seen


@pytest.mark.parametrize("n", [11, 26])
def test_task_from_records_takes_up_to_26_choices_and_the_fake_model_scores_them(tmp_path: Path, n: int) -> None:
    # Up to b94469e graph/optimize.py lettered choices A-J only: an 11th choice raised a raw IndexError.
    from tprompt.evaluator import score_prompt
    from tprompt.models import get_model
    from tprompt.models.recorder import Recorder

    rows = [{"question": f"Which is option {k}?", "choices": [f"opt {j}" for j in range(n)], "answer": f"opt {k}"}
            for k in (0, n - 1, n // 2, 1)]
    task = tp.task_from_records("wide", rows, description="Pick the option named.")
    assert all(len(e.choices or ()) == n for e in task.train)
    last = next(e for e in (*task.train, *task.test) if e.answer_text == f"opt {n - 1}")
    assert last.answer == "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[n - 1]
    with Recorder(tmp_path / "t.db") as rec:
        ev = score_prompt("Answer with the letter.", task.train, task=task, model=get_model("fake"), recorder=rec)
    assert ev.n_examples == len(task.train) and len(ev.answers) == len(task.train)
    assert all(a.parsed is None or a.parsed in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[:n] for a in ev.answers)


def test_task_from_records_splits_as_a_task_file_does(tmp_path: Path) -> None:
    from tprompt.evaluator import load_task

    rows = [{"question": f"Her birthday is on day {i} of April, 1995.", "reference": f"1995-04-{i:02d}"}
            for i in range(1, 31)]
    path = tmp_path / "dates.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    from_file, from_records = load_task(str(path)), tp.task_from_records("dates", rows, description="d")
    # was: 6/24 from the file, 15/15 (shuffled with a seed) from the same rows in Python
    assert [e.question for e in from_records.train] == [e.question for e in from_file.train]
    assert [e.question for e in from_records.test] == [e.question for e in from_file.test]
    assert (len(from_records.train), len(from_records.test)) == (6, 24)
    # A row's own id and split count as they do in a file.
    named = [{**r, "id": f"row{i}", "split": "train" if i < 3 else "test"} for i, r in enumerate(rows)]
    task = tp.task_from_records("dates", named, description="d")
    assert [e.id for e in task.train] == ["row0", "row1", "row2"] and len(task.test) == 27
    with pytest.raises(UsageError, match="row 2: some rows have a 'split' and this one does not"):
        tp.task_from_records("dates", [named[0], rows[1]], description="d")
    with pytest.raises(UsageError, match="the test split has no rows"):
        tp.task_from_records("dates", named[:3], description="d")
    with pytest.raises(UsageError, match="at least 2 rows"):
        tp.task_from_records("dates", rows[:1], description="d")


def test_task_from_records_refuses_27_choices_in_one_line() -> None:
    with pytest.raises(UsageError, match="row 1: 27 choices, at most 26"):
        tp.task_from_records("t", [{"question": "q", "choices": [str(j) for j in range(27)], "answer": "0"}],
                             description="d")


def test_task_from_records_says_which_row_is_wrong() -> None:
    with pytest.raises(UsageError, match="row 2"):
        tp.task_from_records("t", [ROWS[0], {"question": "x"}], description="d")
    with pytest.raises(UsageError, match="neither a choice nor its letter"):
        tp.task_from_records("t", [{"question": "q", "choices": ["a", "b"], "answer": "c"}], description="d")
