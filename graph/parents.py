"""Which candidate a reflective proposal improves on: the stage's best, or one of its Pareto pool.

``--parent-selection best`` takes the stage's best candidate (the highest
objective, as everywhere in tprompt); ``pareto`` draws from the per-example
Pareto pool (:mod:`tprompt.stores.frontier`), each member as often as the
examples it is best on (GEPA's rule), with a random generator seeded by the
run's seed, stage and step, so a resumed run draws the same parent.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence

from ..agents.proposer import exemplar
from ..agents.reflective import Trace, minibatch
from ..evaluator import Example, ObjectiveWeights
from ..stores.events import CandidateAnswered, CandidateJudged, CandidateScored, Event, Stage, StoredEvent
from ..stores.frontier import Frontier, example_scores, stage_frontier
from ..stores.projection import RunState
from .config import RunConfig


def frontier_weights(config: RunConfig) -> dict[str, float]:
    """The weights the Pareto pool's keys are chosen by: the seven's defaults under the run's own weights."""
    return {**ObjectiveWeights().model_dump(), **config.weights}


def run_frontier(events: Iterable[StoredEvent | Event], config: RunConfig, stage: Stage) -> Frontier:
    """``stage``'s Pareto pool as recorded in ``events`` under the run's weights."""
    return stage_frontier(events, stage, frontier_weights(config))


def draw_parent(frontier: Frontier, *, seed: int, stage: Stage, step: int) -> str | None:
    """One member of ``frontier``, drawn with probability proportional to the keys it is best on.

    Deterministic in (seed, stage, step): a killed run that proposes the same step again draws the same parent.
    None when the pool is empty (nothing scored yet).
    """
    if not frontier.members:
        return None
    rng = _rng(seed, stage, step)
    weights = [max(1, len(frontier.wins.get(m, ()))) for m in frontier.members]
    return rng.choices(list(frontier.members), weights=weights, k=1)[0]


def _rng(seed: int, stage: Stage, step: int) -> random.Random:
    return random.Random(f"{seed}:{stage}:{step}")


def choose_parent(events: Sequence[StoredEvent | Event], run: RunState, config: RunConfig, stage: Stage,
                  step: int) -> str | None:
    """The parent of ``stage``'s step ``step`` under ``config.parent_selection`` (None: nothing scored yet)."""
    if config.parent_selection == "pareto":
        return draw_parent(run_frontier(events, config, stage), seed=config.seed, stage=stage, step=step)
    best = run.best(stage)
    return best.prompt_id if best is not None else None


def parent_traces(events: Sequence[StoredEvent | Event], config: RunConfig, stage: Stage, parent: str,
                  train_examples: Callable[[str], Sequence[Example]]) -> list[Trace]:
    """The parent's recorded training answers in ``stage`` with their feedback, one :class:`Trace` per example.

    ``train_examples(task)`` gives the rows of a task's training sample; an
    answer whose example is not among them is not shown (so nothing from the
    held-out split can be). Feedback: what the metrics recorded on the example
    (wrong vs gold, a plug-in's text) and the judge's rationales.
    """
    answers: dict[tuple[str, str], str] = {}
    notes: dict[tuple[str, str], dict[str, str]] = {}
    for item in events:
        ev = item.event if isinstance(item, StoredEvent) else item
        if getattr(ev, "prompt_id", None) != parent or getattr(ev, "stage", None) != stage:
            continue
        if getattr(ev, "split", "train") != "train":
            continue
        if isinstance(ev, CandidateAnswered):
            for a in ev.answers:
                answers[(ev.task, a.example_id)] = a.parsed if a.parsed is not None else "(no answer in the format)"
        elif isinstance(ev, CandidateScored):
            for metric, per in ev.feedback.items():
                for example_id, text in per.items():
                    notes.setdefault((ev.task, example_id), {})[metric] = text
        elif isinstance(ev, CandidateJudged):
            for j in ev.judgements:
                said = j.rationale.strip() or (j.error or "")
                if said:
                    score = "unparsed" if j.score is None else f"{j.score:g}"
                    notes.setdefault((ev.task, j.example_id), {})[f"judge_{j.criterion}"] = f"{score}: {said}"
    table = example_scores(events, stage, frontier_weights(config)).get(parent, {})
    per_example: dict[tuple[str, str], list[float]] = {}
    for (_, task, example_id), value in table.items():
        per_example.setdefault((task, example_id), []).append(value)
    traces = []
    for task in dict.fromkeys(t for t, _ in answers):
        for ex in train_examples(task):
            key = (task, ex.id)
            if key not in answers:
                continue
            values = per_example.get(key, [])
            noted = notes.get(key, {})
            traces.append(Trace(
                task=task, example_id=ex.id,
                exemplar=exemplar(ex),
                answer=answers[key], score=sum(values) / len(values) if values else (0.0 if noted else 1.0),
                feedback=tuple(text if metric == "accuracy" else f"{metric}: {text}"  # wrong vs gold first
                               for metric, text in sorted(noted.items(), key=lambda kv: kv[0] != "accuracy")),
            ))
    return traces


def reflection_batch(traces: Sequence[Trace], config: RunConfig, stage: Stage, step: int) -> list[Trace]:
    """The traces a step's proposer is shown: ``reflection_examples`` of them, failures first (seeded per step)."""
    return minibatch(traces, config.reflection_examples, _rng(config.seed, stage, step))


__all__ = ("choose_parent", "draw_parent", "frontier_weights", "parent_traces", "reflection_batch", "run_frontier")
