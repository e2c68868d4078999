"""The graph is the algorithm (issue 10): explicit edges, the evaluator scoring recorded answers,
rescoring without model calls, a person reviewing a step."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from test_graph import comparable, run_in_process, tprompt

from tprompt.graph import build_graph, comparable_events
from tprompt.graph.rescore import rescore_run
from tprompt.stores import EventLog

END, START = "__end__", "__start__"
STEP_NODES = {"propose", "review", "score", "evaluate", "close_step", "test", "finish"}


def edges(transfer: bool) -> set[tuple[str, str]]:
    return {(e.source, e.target) for e in build_graph(transfer=transfer).get_graph().edges}


def test_transfer_prompting_edges_are_the_algorithms() -> None:
    assert edges(True) == {
        *((START, n) for n in ("start_source", "transfer", "propose", "review", "score", "evaluate", "close_step",
                               "test", "finish", END)),
        ("start_source", "score"), ("transfer", "score"),
        ("propose", "review"), ("propose", "score"), ("propose", "close_step"),
        ("review", END),
        ("score", "evaluate"),
        ("evaluate", "score"), ("evaluate", "close_step"), ("evaluate", "test"), ("evaluate", "finish"),
        ("close_step", "propose"), ("close_step", "transfer"), ("close_step", "test"),
        ("test", "evaluate"),
        ("finish", END),
    }


def test_target_only_graph_has_no_source_stage_or_transfer() -> None:
    got = edges(False)
    nodes = {n for e in got for n in e}
    assert nodes == STEP_NODES | {"start_target", START, END}
    assert ("start_target", "score") in got and ("close_step", "propose") in got
    assert not any("transfer" in e or "start_source" in e for e in got)


def test_tprompt_graph_prints_mermaid_and_ascii(tmp_path: Path) -> None:
    mermaid = tprompt(tmp_path / "t.db", "graph").stdout
    assert "graph TD;" in mermaid and "score --> evaluate;" in mermaid
    assert "propose -.-> score;" in mermaid and "transfer --> score;" in mermaid
    art = tprompt(tmp_path / "t.db", "graph", "--ascii", "--target-only").stdout
    assert "| start_target |" in art and "transfer" not in art
    assert not (tmp_path / "t.db").exists()  # drawing needs no database


def test_evaluator_scores_exactly_the_recorded_answers(tmp_path: Path) -> None:
    log, run_id = run_in_process(tmp_path / "t.db")
    events = list(log.events(run_id))
    answered = {(e.event.stage, e.event.step, e.event.prompt_id, e.event.task): e for e in events
                if e.type == "candidate.answered" and e.event.split == "train"}
    scored = [e for e in events if e.type == "candidate.scored"]
    assert scored and len(answered) == len(scored)
    for s in scored:
        a = answered[(s.event.stage, s.event.step, s.event.prompt_id, s.event.task)]
        assert a.seq < s.seq and s.event.n_examples == len(a.event.answers)
        assert s.event.metrics["accuracy"] == sum(x.correct for x in a.event.answers) / len(a.event.answers)
    tests = [e for e in events if e.type == "test.answered"]
    assert [t.event.role for t in tests] == ["original", "best_source", "best_target"]


def test_rescore_recomputes_metrics_with_zero_model_calls(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    log, run_id = run_in_process(db)
    calls_before = sqlite3.connect(db).execute("SELECT count(*) FROM transcripts").fetchone()[0]
    # The same weights give back the same history, event for event.
    same = rescore_run(log, run_id, {})
    assert comparable_events(log, same) == comparable(log, run_id)
    out = tprompt(db, "rescore", run_id, "--weight", "accuracy=1", "--weight", "ifr=0", "--weight", "ece=0",
                  "--weight", "auroc=0", "--weight", "pr_n=0", "--weight", "pr_p=0", "--json")
    data = json.loads(out.stdout)
    assert data["status"] == "completed"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM transcripts").fetchone()[0] == calls_before
    transcript = json.loads(tprompt(db, "transcript", data["run_id"], "--json").stdout)
    assert transcript == []  # the rescored run made no call and inherits none
    rescored = log.state(data["run_id"])
    assert rescored.parent_run_id == run_id
    for row in data["table"]:  # the objective is now the accuracy alone
        assert row["objective"] == row["accuracy"]
    assert any(log.state(run_id).tested[r].objective != rescored.tested[r].objective for r in rescored.tested)


def test_rescore_bad_weights_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    _, run_id = run_in_process(db)
    for bad in ("speed=1", "accuracy=x", "accuracy=-1"):
        proc = tprompt(db, "rescore", run_id, "--weight", bad, check=False)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) <= 2, proc.stderr
    assert len(EventLog(db).runs()) == 1


def test_review_pauses_before_scoring_and_records_the_edit(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    args = ["run", "--model", "fake", "--source", "ai2_science", "--target", "arc_challenge", "--steps", "1",
            "--candidates", "3", "--examples", "2", "--test-examples", "2", "--mode", "generate", "--review", "--json"]
    first = json.loads(tprompt(db, *args).stdout)
    run_id = first["run_id"]
    assert first["status"] == "paused"
    log = EventLog(db)
    state = log.state(run_id)
    assert state.awaiting_review() and state.stage == "source" and state.in_flight == 1
    assert not state.step_scores("source", 1)  # nothing of step 1 was scored
    refused = tprompt(db, "resume", run_id, check=False)
    assert refused.returncode != 0 and f"tprompt --db {db} review {run_id}" in refused.stderr
    shown = json.loads(tprompt(db, "review", run_id, "--json").stdout)
    n = len(shown["candidates"])
    tprompt(db, "review", run_id, "--drop", "1", "--add", "Answer with the letter only.", "--accept")
    revised = [e.event for e in log.events(run_id) if e.type == "step.revised"]
    assert len(revised) == 1 and revised[0].by == "review"
    texts = [c.text for c in revised[0].candidates]
    assert len(texts) == n and texts[-1] == "Answer with the letter only."
    assert shown["candidates"][0]["text"] not in texts
    json.loads(tprompt(db, "resume", run_id, "--json").stdout)
    scored = {e.event.text for e in log.events(run_id) if e.type == "candidate.scored" and e.event.step == 1
              and e.event.stage == "source"}
    assert scored == set(texts)
