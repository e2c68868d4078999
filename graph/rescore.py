"""Re-evaluating a past run under other objective weights, with zero model calls.

The scorer's answers are events (``candidate.answered``), and the evaluator
computes the metrics from such an event alone. So a run can be evaluated
again: :func:`rescore_run` forks it at its first event and writes the same
history with every ``candidate.scored`` and ``prompt.tested`` recomputed from
its answers under the new objective, and the bests and top-k of every
``step.completed`` and ``stage.completed`` recomputed from those scores.

What happened is kept: the proposals, the transfer and the prompts tested
are the original run's (the optimizer saw the old objective). The rescored
run says how that history ranks under the new one; to optimize under it,
fork the run at seq 1 with the new weights (new proposer calls), or resume a
rescored run that had not finished.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import cast

from pydantic import ValidationError

from ..errors import ConfigError, UsageError
from ..evaluator import ObjectiveWeights, objective
from ..stores import EventLog
from ..stores.events import (
    AnyEvent,
    CandidateAnswered,
    CandidateScored,
    Event,
    PromptTested,
    RunFailed,
    RunForked,
    RunPaused,
    RunResumed,
    StageCompleted,
    StepCompleted,
    StoredEvent,
)
from ..stores.projection import RunState, answer_key, fold
from .config import RunConfig
from .nodes import evaluate_answers
from .rules import stage_top_k, step_best

#: Marks of an execution, not of its result: a rescore does not copy them.
_SKIPPED = (RunForked, RunPaused, RunResumed, RunFailed)


def parse_weights(items: list[str]) -> dict[str, float]:
    """``["accuracy=1", "ifr=0"]`` -> ``{"accuracy": 1.0, "ifr": 0.0}``; one clear UsageError otherwise."""
    names = list(ObjectiveWeights.model_fields)
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in names:
            raise UsageError(f"bad weight {item!r}", hint=f"use NAME=NUMBER with NAME one of {', '.join(names)}")
        try:
            weight = float(value)
        except ValueError:
            raise UsageError(f"bad weight {item!r}: {value!r} is not a number", hint="e.g. --weight accuracy=1") from None
        if not math.isfinite(weight):  # inf, NaN, or 1e309 (which float() reads as inf)
            raise UsageError(f"bad weight {item!r}: {value.strip()!r} is not a finite number",
                             hint="give a number such as 0.5, e.g. --weight accuracy=1")
        out[name] = weight
    return out


def rescore_events(run_events: list[StoredEvent], config: RunConfig, base: RunState) -> list[Event]:
    """The run's own history after ``base`` with the evaluator's events recomputed under ``config.weights``."""
    weights = ObjectiveWeights(**config.weights)
    answers: dict[tuple, CandidateAnswered] = {}
    state = base
    out: list[Event] = []
    now = datetime.now(timezone.utc)
    for se in run_events:
        ev: Event = se.event
        if isinstance(ev, _SKIPPED):
            continue
        if isinstance(ev, CandidateAnswered):
            answers[answer_key(ev)] = ev
        elif isinstance(ev, (CandidateScored, PromptTested)):
            key = answer_key(ev)
            if key not in answers:
                raise UsageError(
                    f"run {se.run_id} has no recorded answers for event {se.seq} ({se.type}): it was written "
                    "before tprompt kept the scorer's answers, so it cannot be rescored without model calls",
                    hint="fork it with the new weights instead (tprompt fork RUN --at 1 ...)",
                )
            ev = evaluate_answers(answers[key], lambda m: objective(m, weights))
        elif isinstance(ev, StepCompleted):
            best_id, best_objective = step_best(state, ev.stage)
            ev = ev.model_copy(update={"best_prompt_id": best_id, "best_objective": best_objective})
        elif isinstance(ev, StageCompleted):
            ev = ev.model_copy(update={"top_k": stage_top_k(state, ev.stage, config.top_k)})
        out.append(ev)
        seq = state.last_seq + 1
        state = fold([StoredEvent(run_id=state.run_id, seq=seq, event_id=f"rescore:{seq}",
                                  schema_version=type(ev).schema_version, created_at=now, event=cast(AnyEvent, ev))],
                     state=state)
    return out


def rescore_run(log: EventLog, run_id: str, weights: Mapping[str, float]) -> str:
    """Fork ``run_id`` as a new run evaluated under ``weights`` (merged into its own); returns the new id.

    Raises:
        UnknownRun, ConfigError (bad weights), UsageError (a run without recorded answers).
    """
    run_id = log.resolve(run_id)
    state = log.state(run_id)
    if state.config is None:
        raise UsageError(f"run {run_id} has no run configuration, so it cannot be rescored")
    merged = {**state.config.weights, **weights}
    try:
        ObjectiveWeights(**merged)
        config = RunConfig(**{**state.config.model_dump(), "weights": merged})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        msg = first.get("msg", str(exc)).removeprefix("Value error, ")
        raise ConfigError(f"weights{'.' + where if where else ''}: {msg}", hint="weights are >= 0, not all 0") from None
    events = list(log.events(run_id))
    # The fork's own history starts after the lineage's run.created (seq 1) and its run.forked (seq 2).
    base = fold(events[:1], run_id=run_id).model_copy(
        update={"config": config, "target_task": state.target_task, "last_seq": 2}
    )
    rescored = rescore_events(events[1:], config, base)
    return log.fork(
        run_id, 1, config=config, target_task=state.target_task or config.target_task,
        name=f"{state.name or run_id} rescored", events=rescored,
    )


__all__ = ("parse_weights", "rescore_events", "rescore_run")
