"""The reflective proposer style: a parent's failures and their feedback in the request, never a held-out
example; the parent and the examples shown are events, so a paused run resumes to the same events."""

from __future__ import annotations

import json
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
import test_user_template as user_template

from tprompt.errors import ConfigError
from tprompt.evaluator import load_task
from tprompt.graph import Runner, comparable_events, create_run, make_config
from tprompt.graph.resources import ExecutionOptions
from tprompt.stores import EventLog
from tprompt.stores.events import CandidateAnswered, StepProposed, TestAnswered

own = user_template.own  # the fixture of the user's own task and template (cli: conftest's fixture)

SMALL = dict(source_tasks=["bbh/navigate"], target_task="bbh/web_of_lies", proposer="fake", scorer="fake", steps=2,
             candidates=2, top_k=2, examples=6, test_examples=6, mode="generate", proposer_style="reflective",
             reflection_examples=3)


def _request_text(log: EventLog, call_id: str) -> str:
    row = log.transcripts.call(call_id)
    assert row is not None
    body = json.loads(log.transcripts.body(row.request_hash) or "{}")
    return "\n".join(str(m[1] if isinstance(m, list) else m.get("content", "")) for m in body["messages"])


def _run(tmp_path: Path, name: str, **overrides: Any) -> tuple[EventLog, str]:
    log = EventLog(tmp_path / f"{name}.db")
    run_id = create_run(log, make_config({**SMALL, **overrides}))
    assert Runner(log, run_id).run().status == "completed"
    return log, run_id


@pytest.mark.parametrize("selection", ["best", "pareto"])
def test_a_reflective_request_shows_the_parents_failures_with_feedback_and_no_held_out_example(
        tmp_path: Path, selection: str) -> None:
    log, run_id = _run(tmp_path, "r", parent_selection=selection)
    events = [se.event for se in log.events(run_id)]
    tasks = {t: load_task(t) for t in ("bbh/navigate", "bbh/web_of_lies")}
    rows = {(t, e.id): e for t, task in tasks.items() for e in (*task.train, *task.test)}
    held_out = [rows[(ev.task, a.example_id)].question for ev in events
                if isinstance(ev, TestAnswered) for a in ev.answers]
    assert held_out
    reflective = [ev for ev in events if isinstance(ev, StepProposed) and ev.step > 0]
    assert len(reflective) == 4  # two steps in each stage, the transferred seeds among the target's parents
    for ev in reflective:
        assert ev.parent_id is not None and len(ev.shown) == 3
        # The parent's own answers on the examples shown, as recorded before this proposal.
        answered = {(a_ev.task, a.example_id): a for a_ev in events if isinstance(a_ev, CandidateAnswered)
                    and a_ev.prompt_id == ev.parent_id and a_ev.split == "train" and a_ev.stage == ev.stage
                    for a in a_ev.answers}
        verdicts = [not answered[key].correct for key in ev.shown]
        assert verdicts == sorted(verdicts, reverse=True)  # failures first
        for call_id in ev.call_ids:
            text = _request_text(log, call_id)
            parent_text = next(c.text for e in events if isinstance(e, StepProposed) for c in e.candidates
                               if c.prompt_id == ev.parent_id)
            assert f"<INS>{parent_text}</INS>" in text
            for key in ev.shown:
                a, row = answered[key], rows[key]
                assert row.question.strip() in text
                if not a.correct:
                    assert f"answered {a.parsed}, the gold answer is {row.answer}" in text
            assert not any(q.strip() in text for q in held_out)
    assert any("(failed)" in _request_text(log, ev.call_ids[0]) for ev in reflective)


def test_a_run_paused_anywhere_resumes_to_the_events_of_one_never_paused(tmp_path: Path) -> None:
    whole, ref = _run(tmp_path, "whole", parent_selection="pareto")
    log = EventLog(tmp_path / "paused.db")
    run_id = create_run(log, make_config({**SMALL, "parent_selection": "pareto"}))
    for budget in (6, 13, 20, 31):  # pause at several points of both stages (rollouts of 6 examples each)
        assert Runner(log, run_id, options=ExecutionOptions(max_rollouts=budget)).run().status == "paused"
    assert Runner(log, run_id).run().status == "completed"
    assert comparable_events(log, run_id) == comparable_events(whole, ref)


def test_judge_rationales_are_feedback(tmp_path: Path) -> None:
    log, run_id = _run(tmp_path, "j", judge="fake", steps=1, target_steps=1, transfer=False)
    proposed = [se.event for se in log.events(run_id) if isinstance(se.event, StepProposed) and se.event.step > 0]
    text = _request_text(log, proposed[0].call_ids[0])
    assert "judge_relevance: " in text
    # On a failure, what was wrong comes first, then the judge's rationales.
    failed = [block for block in text.split("### Example") if "(failed)" in block]
    assert failed and all(b.split("Feedback: ", 1)[1].startswith("answered ") for b in failed)


def test_pareto_selection_needs_the_reflective_style() -> None:
    with pytest.raises(ConfigError, match="set proposer_style = reflective"):
        make_config({**SMALL, "proposer_style": "paper", "parent_selection": "pareto"})


def test_reflective_style_with_the_users_template(cli, tmp_path: Path, own) -> None:
    db = user_template._own_run(cli, tmp_path, own, "--proposer-style", "reflective", "--parent-selection", "pareto")
    request = user_template._requests(db, "proposer")[0]
    text = request["messages"][-1][1]
    assert "proposer.reflect@v1" in request["templates"] and "proposer.template@v1" in request["templates"]
    assert "[system] <INSTRUCTION>\n[user] Sentence: {sentence}" in text  # the template, the message it writes
    assert f"<INS>{user_template.SYSTEM}</INS>" in text  # the parent's optimizable message
    assert "Feedback: rouge_l: the reference: 19" in text  # the open task's metric feedback quotes the reference


def test_the_timeline_names_a_reflective_steps_parent() -> None:
    from datetime import datetime

    from tprompt.stores.events import PromptCandidate, StoredEvent
    from tprompt.tui.data import describe

    ev = StepProposed(stage="source", step=1, candidates=[PromptCandidate(prompt_id="p-2", text="b")],
                      parent_id="p-1", shown=[("t", "e1"), ("t", "e2")])
    se = StoredEvent(run_id="r", seq=3, event_id="r:3", schema_version=1, created_at=datetime.now(UTC), event=ev)
    assert describe(se) == "1 candidate(s), improving p-1 from 2 answer(s) with feedback"
