"""The Transcripts tab shows, under each scorer answer, the feedback its metrics recorded for it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tprompt import optimize
from tprompt.stores import EventLog
from tprompt.stores.events import CandidateScored
from tprompt.tui.call_view import AnswerIndex, Examples, call_text
from tprompt.tui.transcripts import Transcripts


def test_a_wrong_answer_shows_its_metric_feedback(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    state = optimize(db, target="arc_challenge", model="fake", steps=1, candidates=1, examples=6, test_examples=2,
                     mode="generate")
    log = EventLog(db)
    events = list(log.events(state.run_id))
    answers = AnswerIndex()
    answers.add(events)
    notes = {(se.event.prompt_id, eid): text for se in events if isinstance(se.event, CandidateScored)
             for eid, text in se.event.feedback.get("accuracy", {}).items()}
    assert notes, "the fake model gets some arc_challenge answers wrong"
    transcripts = Transcripts(log, state.run_id)
    shown = 0
    for row in transcripts.refresh():
        for ev, answer in answers.of_call(row.call_id):
            note = notes.get((ev.prompt_id, answer.example_id))
            if note is None or ev.split != "train":
                continue
            text = call_text(row, transcripts.detail(row), needle="", answers=answers, examples=Examples(), judged=[])
            assert f"feedback (accuracy): {note}" in text.plain
            shown += 1
    assert shown


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_the_candidates_tab_shows_the_pareto_pool(tmp_path: Path) -> None:
    """A candidate's box says whether it is in its stage's Pareto pool, as ``tprompt show`` projects it."""
    from test_tui import candidate_boxes, running

    from tprompt.graph.parents import run_frontier

    db = tmp_path / "p.db"
    state = optimize(db, target="arc_challenge", model="fake", steps=2, candidates=2, examples=6, test_examples=2,
                     mode="generate", parent_selection="pareto", proposer_style="reflective")
    log = EventLog(db)
    assert state.config is not None
    front = run_frontier(list(log.events(state.run_id)), state.config, "target")
    log.close()
    assert front.members and set(front.candidates) - set(front.members), "some candidates out of the pool"
    async with running(db) as (app, pilot):
        seen = set()
        for s, box in await candidate_boxes(pilot, app, state.run_id, len(state.scores)):
            assert f"Pareto pool, target stage: {len(front.members)} of {len(front.candidates)} candidates" in box
            member = s.prompt_id in front.members
            assert (f"{s.prompt_id} is in the pool" in box) == member
            assert (f"{s.prompt_id} is not in the pool" in box) == (not member)
            seen.add(member)
        assert seen == {True, False}
