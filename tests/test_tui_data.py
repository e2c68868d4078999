"""The TUI's view logic without Textual: summaries, follower, curves, descriptions, plot, diff, transcripts."""

from __future__ import annotations

import shutil
from pathlib import Path

from _tui_db import DEMO_RUN, FORK_RUN, MARKUP_PROMPT
from conftest import run_created
from rich.text import Text

from tprompt.stores import EventLog, PromptCandidate, prompt_id_of
from tprompt.stores.events import CandidateScored, StageStarted, StepCompleted, StepProposed
from tprompt.tui.data import (
    RunFollower,
    RunsModel,
    best_prompts,
    best_scored,
    describe,
    metric_names,
    payload_json,
    score_curve,
    state_digest,
)
from tprompt.tui.transcripts import Transcripts, system_prompt
from tprompt.tui.widgets import diff_text, plot_text


def _scored(step: int, text: str, objective: float, *, rung: int = 0, task: str = "source") -> CandidateScored:
    return CandidateScored(
        stage="source", step=step, prompt_id=prompt_id_of(text), text=text, task=task, n_examples=4,
        metrics={"accuracy": objective, "custom": 0.5}, objective=objective, rung=rung,
    )


def test_score_curve_is_per_step_with_running_best(log: EventLog) -> None:
    run_id = log.create_run(run_created())
    cands = [PromptCandidate(prompt_id=prompt_id_of(t), text=t) for t in ("a", "b")]
    log.append(run_id, [StageStarted(stage="source", tasks=["source"])])
    log.append(run_id, [StepProposed(stage="source", step=0, candidates=cands[:1]), _scored(0, "a", 0.4)])
    log.append(run_id, [StepCompleted(stage="source", step=0, best_prompt_id=None, best_objective=0.4)])
    log.append(
        run_id,
        [
            StepProposed(stage="source", step=1, candidates=cands),
            _scored(1, "a", 0.1),  # rung 0 is superseded by the deeper rung
            _scored(1, "a", 0.3, rung=1),
            _scored(1, "b", 0.2),
        ],
    )
    curve = score_curve(log.state(run_id), "source")
    assert curve.steps == [0, 1]
    assert curve.candidates == [[0.4], [0.3, 0.2]]
    assert curve.best == [0.4, 0.4]
    assert score_curve(log.state(run_id), "target").steps == []
    assert metric_names(log.state(run_id).scores) == ["accuracy", "custom"]


def test_runs_model_follows_changed_runs(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    with EventLog(path) as writer:
        a = writer.create_run(run_created("a"), run_id="r-a")
        with EventLog(path, readonly=True) as reader:
            model = RunsModel(reader)
            assert model.changed()
            first = model.summaries()
            assert [s.run_id for s in first] == [a] and not model.changed()
            writer.append(a, [StageStarted(stage="source", tasks=["source"])])
            assert model.changed()
            again = model.summaries()
            assert again[0].status == "running" and again[0].last_seq == 2
            assert again[0] != first[0]
            assert not model.changed() and model.summaries() == again


def test_follower_reads_only_new_events_and_replays(recorded: Path) -> None:
    with EventLog(recorded, readonly=True) as log:
        follower = RunFollower(log, FORK_RUN[:7])
        follower.CHECKPOINT_EVERY = 4  # exercise replays from checkpoints
        assert follower.run_id == FORK_RUN
        fresh = follower.poll()
        assert len(fresh) == log.last_seq(FORK_RUN) and follower.poll() == []
        assert follower.state == log.state(FORK_RUN)
        for seq in range(1, len(fresh) + 1):
            assert follower.state_at(seq) == log.state(FORK_RUN, upto=seq), seq
        # the fork's history starts with the parent's events, read through
        assert fresh[0].run_id == DEMO_RUN and fresh[-1].run_id == FORK_RUN


def test_every_event_has_a_description_and_payload(recorded: Path) -> None:
    with EventLog(recorded, readonly=True) as log:
        events = list(log.events(FORK_RUN))
        state = log.state(FORK_RUN)
    types = {se.type for se in events}
    assert {"run.created", "run.forked", "candidate.scored", "prompt.tested", "transfer.selected"} <= types
    for se in events:
        if se.type not in ("run.completed", "run.resumed"):
            assert describe(se), se.type
        assert f'"seq": {se.seq}' in payload_json(se)
    digest = state_digest(state)
    assert "status: completed" in digest and "best target" in digest
    labels = [label for label, _ in best_prompts(state)]
    assert labels[0] == "source #1" and any(label.startswith("target") for label in labels)


def test_plot_text_fits_and_marks_best() -> None:
    from tprompt.tui.data import Curve

    curves = [
        Curve(stage="source", steps=[0, 1], candidates=[[0.2], [0.1, 0.5]], best=[0.2, 0.5]),
        Curve(stage="target", steps=[0], candidates=[[0.3, 0.6]], best=[0.6]),
    ]
    text = plot_text(curves, 60, 12)
    lines = text.plain.splitlines()
    assert len(lines) == 12 and max(len(line) for line in lines) <= 60
    assert text.plain.count("●") == 3 + 1  # three steps and the legend
    assert "0.600" in text.plain and "0.100" in text.plain
    assert "s0" in text.plain and "t0" in text.plain
    assert "no scored" in plot_text([], 60, 12).plain


def test_diff_text_is_literal() -> None:
    diff = diff_text(MARKUP_PROMPT, "Answer [b]carefully[/b].", a_label="a", b_label="b")
    assert isinstance(diff, Text)
    assert "-" + MARKUP_PROMPT in diff.plain and "+Answer [b]carefully[/b]." in diff.plain
    assert "word diff" in diff.plain
    assert "identical" in diff_text("same", "same").plain


def test_transcripts_filter_and_search(recorded: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.db"
    shutil.copy(recorded, copy)
    with EventLog(copy, readonly=True) as log:
        tr = Transcripts(log, DEMO_RUN)
        assert tr.refresh() and not tr.refresh()
        assert tr.agents() == ["proposer", "scorer"]
        steps = tr.steps()
        assert steps[0] == "source:0" and steps[-1] == "test"
        scorer = tr.filtered(agent="scorer")
        assert scorer and all(r.agent == "scorer" for r in scorer)
        detail = tr.detail(scorer[0])
        assert detail.messages[0][0] == "system" and system_prompt(detail) == "Answer the question."
        assert detail.response and detail.params["kind"] in ("chat", "options")
        hits = tr.filtered(search="HARMFUL TO AN ECOSYSTEM")  # any case
        assert 0 < len(hits) < len(tr.rows)
        assert all("harmful to an ecosystem" in " ".join(t for _, t in tr.detail(r).messages) for r in hits)
        assert tr.filtered(search="zzz-not-there") == []


def test_best_scored_agrees_with_the_projection(recorded: Path) -> None:
    with EventLog(recorded, readonly=True) as log:
        for run in log.runs():
            for seq in range(1, log.last_seq(run.run_id) + 1):
                state = log.state(run.run_id, upto=seq)
                for stage in ("source", "target"):
                    expected = state.best(stage)
                    found = best_scored(state, stage)
                    if expected is None:
                        assert found is None
                    else:
                        assert found is not None
                        assert (found[0].prompt_id, found[1]) == (expected.prompt_id, expected.objective)
