"""Score curves: per step of a stage, every candidate's objective and the best so far.

The one rule behind the TUI's score plot and the reports' curve plots, read
from a run's state (no second fold of its events). A candidate's value at a
step is :func:`~tprompt.stores.projection.prompt_objectives` over that step's
scores (its deepest racing rung, the mean over its tasks); the best so far is
the running maximum. Steps are those with a score, so a step still in flight
shows what it has scored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .events import Stage
from .projection import RunState, ScoredPrompt, prompt_objectives


@dataclass(frozen=True, slots=True)
class Curve:
    """One stage's curve, one entry per step in every list.

    Attributes:
        stage: ``"source"`` or ``"target"``.
        steps: the stage's steps that have a score, ascending.
        candidates: per step, each candidate's objective (training examples).
        best: per step, the stage's best objective so far.
        calls: per step, the training scorer calls the run had spent (both stages) when the
            step's last score came in; empty for a curve built by hand.
    """

    stage: str
    steps: list[int] = field(default_factory=list)
    candidates: list[list[float]] = field(default_factory=list)
    best: list[float] = field(default_factory=list)
    calls: list[int] = field(default_factory=list)


def score_curve(state: RunState, stage: Stage) -> Curve:
    """The curve of ``stage`` in the run whose state is ``state`` (the rule: the module doc)."""
    spent = 0
    per_step: dict[int, list[ScoredPrompt]] = {}
    spent_by_step: dict[int, int] = {}  # step -> scorer calls spent when its last score came in
    for s in state.scores:  # in the order the run wrote them
        spent += s.scorer_calls
        if s.stage == stage:
            per_step.setdefault(s.step, []).append(s)
            spent_by_step[s.step] = spent
    curve = Curve(stage=stage)
    running = float("-inf")
    for step in sorted(per_step):
        rows = per_step[step]
        values = [mean for mean, _ in prompt_objectives(rows).values()]
        running = max(running, *values)
        curve.steps.append(step)
        curve.candidates.append(values)
        curve.best.append(running)
        curve.calls.append(spent_by_step[step])
    return curve


__all__ = ("Curve", "score_curve")
