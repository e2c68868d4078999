"""Score curves (``stores.curves``): the one rule behind the TUI's plot and the reports' curve plots."""

from __future__ import annotations

from pathlib import Path

from _tui_db import DEMO_RUN, FORK_RUN
from conftest import run_created

from tprompt.stores import EventLog, PromptCandidate, prompt_id_of
from tprompt.stores.curves import score_curve
from tprompt.stores.events import CandidateScored, StageStarted, StepCompleted, StepProposed
from tprompt.stores.projection import ScoredPrompt, prompt_objectives


def _scored(stage: str, step: int, text: str, objective: float, calls: int) -> CandidateScored:
    return CandidateScored(
        stage=stage, step=step, prompt_id=prompt_id_of(text), text=text, task=stage, n_examples=4,
        metrics={"accuracy": objective}, objective=objective, scorer_calls=calls,
    )


def _proposed(stage: str, step: int, *texts: str) -> StepProposed:
    return StepProposed(stage=stage, step=step, candidates=[PromptCandidate(prompt_id=prompt_id_of(t), text=t)
                                                              for t in texts])


def test_calls_count_both_stages_up_to_each_step(log: EventLog) -> None:
    run_id = log.create_run(run_created())
    log.append(run_id, [StageStarted(stage="source", tasks=["source"]), _proposed("source", 0, "a"),
                        _scored("source", 0, "a", 0.4, 4),
                        StepCompleted(stage="source", step=0, best_prompt_id=None, best_objective=0.4)])
    log.append(run_id, [_proposed("source", 1, "b", "c"), _scored("source", 1, "b", 0.6, 4),
                        _scored("source", 1, "c", 0.5, 0)])  # a cache hit costs no call
    log.append(run_id, [StepCompleted(stage="source", step=1, best_prompt_id=None, best_objective=0.6),
                        StageStarted(stage="target", tasks=["target"]), _proposed("target", 0, "d"),
                        _scored("target", 0, "d", 0.2, 3)])
    state = log.state(run_id)
    source, target = score_curve(state, "source"), score_curve(state, "target")
    assert (source.steps, source.candidates, source.best, source.calls) == ([0, 1], [[0.4], [0.6, 0.5]],
                                                                            [0.4, 0.6], [4, 8])
    assert (target.steps, target.best, target.calls) == ([0], [0.2], [11])


def _old_report_points(log: EventLog, run_id: str) -> list[tuple[str, int, float, int]]:
    """The rule ``experiments.report.score_curve`` had, re-folding the events: (stage, step, best, calls)."""
    points, calls, scores = [], 0, []
    for se in log.events(run_id):
        ev = se.event
        if se.type == "candidate.scored":
            calls += ev.scorer_calls
            scores.append(ScoredPrompt(ev.prompt_id, ev.text, ev.stage, ev.step, ev.task, ev.n_examples, ev.metrics,
                                       ev.objective, ev.rung, seq=se.seq))
        elif se.type == "step.completed":
            ranked = prompt_objectives(s for s in scores if s.stage == ev.stage)
            if ranked:
                points.append((ev.stage, ev.step, max(mean for mean, _ in ranked.values()), calls))
    return points


def test_the_curve_is_what_the_report_plotted(recorded: Path) -> None:
    with EventLog(recorded, readonly=True) as log:
        for run_id in (DEMO_RUN, FORK_RUN):
            state = log.state(run_id)
            points = []
            for stage in ("source", "target"):
                curve = score_curve(state, stage)
                points += [(stage, *p) for p in zip(curve.steps, curve.best, curve.calls)]
            old = _old_report_points(log, run_id)
            assert old and any(calls for *_, calls in old)
            assert sorted(old) == sorted(points), run_id
