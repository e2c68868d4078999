"""The Transcripts tab shows, under each scorer answer, the feedback its metrics recorded for it."""

from __future__ import annotations

from pathlib import Path

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
