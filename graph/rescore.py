"""Re-evaluating a past run under other objective weights or metrics (zero model calls) or another judge or rubric.

The scorer's answers are events (``candidate.answered``), and the evaluator
computes the metrics from such an event alone. So a run can be evaluated
again: :func:`rescore_run` forks it at its first event and writes the same
history with every ``candidate.scored`` and ``prompt.tested`` recomputed from
its answers under the new objective (and the run's metric plug-ins, new ones
added with ``metrics``, computed over the recorded answers and the task's
rows), and the bests and top-k of every
``step.completed`` and ``stage.completed`` recomputed from those scores.

A new judge model or rubric costs judge calls only (cached where a request
is identical, so a rubric changed back costs nothing): every recorded answer
set is judged again, its ``candidate.judged`` replaced (or, for a run that
had no judge, added right after its ``candidate.answered``), and the scores
follow. The scorer is never called.

What happened is kept: the proposals, the transfer and the prompts tested
are the original run's (the optimizer saw the old objective). The rescored
run says how that history ranks under the new one; to optimize under it,
fork the run at seq 1 with the new weights (new proposer calls), or resume a
rescored run that had not finished.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from ..config import RecordedFile
from ..errors import JudgeUnparseable, UsageError
from ..evaluator import ObjectiveWeights, Task
from ..evaluator.registry import metric_versions
from ..judge.rubric import is_judge_metric, judge_metric
from ..stores import EventLog, new_run_id
from ..stores.events import (
    Answered,
    AnyEvent,
    CandidateAnswered,
    CandidateJudged,
    CandidateScored,
    Event,
    Judged,
    PromptTested,
    RunFailed,
    RunForked,
    RunPaused,
    RunResumed,
    StageCompleted,
    StepCompleted,
    StoredEvent,
    TestAnswered,
    TestJudged,
)
from ..stores.projection import AnswerKey, RunState, answer_key, fold
from .config import RunConfig
from .nodes import evaluate_answers, judge_extra
from .resources import Evaluation, open_judge
from .rules import judge_examples, judge_step, stage_top_k, step_best

#: (the answers to judge, the seq its candidate.judged will have) -> that event
Rejudge = Callable[[Answered, int], Judged]

#: Marks of an execution, not of its result: a rescore does not copy them.
_SKIPPED = (RunForked, RunPaused, RunResumed, RunFailed)


def parse_weights(items: list[str]) -> dict[str, float]:
    """``["accuracy=1", "ifr=0"]`` -> ``{"accuracy": 1.0, "ifr": 0.0}``; one clear UsageError otherwise.

    Names are checked against the registry where the weights are used (a run's
    plug-ins register theirs when the run's metrics are resolved).
    """
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            names = list(ObjectiveWeights.model_fields)
            raise UsageError(f"bad weight {item!r}", hint=f"use NAME=NUMBER with NAME one of {', '.join(names)}, "
                             "or a metric the run computes")
        try:
            weight = float(value)
        except ValueError:
            raise UsageError(f"bad weight {item!r}: {value!r} is not a number", hint="e.g. --weight accuracy=1") from None
        if not math.isfinite(weight):  # inf, NaN, or 1e309 (which float() reads as inf)
            raise UsageError(f"bad weight {item!r}: {value.strip()!r} is not a finite number",
                             hint="give a number such as 0.5, e.g. --weight accuracy=1")
        out[name] = weight
    return out


def rescore_events(
    run_events: list[StoredEvent], config: RunConfig, base: RunState, tasks: Mapping[str, Task] | None = None,
    *, rejudge: Rejudge | None = None, evaluation: Evaluation | None = None,
) -> list[Event]:
    """The run's own history after ``base`` with the evaluator's events recomputed under ``config``'s
    weights and metrics (``tasks``: given as objects by name; others are loaded by name or path;
    ``evaluation``: the tasks, metrics and objective opened already for ``config``).

    ``rejudge``: judge every answer set again (a new judge or rubric); its
    ``candidate.judged`` replaces the recorded one, or follows the
    ``candidate.answered`` in a run that had none. Without it, the recorded
    judgements are the judge metrics' source.
    """
    if evaluation is None:
        evaluation = Evaluation.open(config, tasks=tasks, task_names=answered_tasks(run_events))
    answers: dict[AnswerKey, Answered] = {}
    judged: dict[AnswerKey, Judged] = {}
    had_judge = any(isinstance(se.event, (CandidateJudged, TestJudged)) for se in run_events)
    state = base
    out: list[Event] = []
    now = datetime.now(UTC)

    def add(ev: Event) -> None:
        nonlocal state
        out.append(ev)
        seq = state.last_seq + 1
        state = fold([StoredEvent(run_id=state.run_id, seq=seq, event_id=f"rescore:{seq}",
                                  schema_version=type(ev).schema_version, created_at=now, event=cast(AnyEvent, ev))],
                     state=state)

    for se in run_events:
        ev: Event = se.event
        if isinstance(ev, _SKIPPED):
            continue
        if isinstance(ev, (CandidateAnswered, TestAnswered)):
            answers[answer_key(ev)] = ev
            if rejudge is not None and not had_judge:
                add(ev)
                ev = judged[answer_key(ev)] = rejudge(ev, state.last_seq + 1)
        elif isinstance(ev, (CandidateJudged, TestJudged)):
            if rejudge is not None:
                ev = rejudge(answers[answer_key(ev)], state.last_seq + 1)
            judged[answer_key(ev)] = ev
        elif isinstance(ev, (CandidateScored, PromptTested)):
            key = answer_key(ev)
            if key not in answers:
                raise UsageError(
                    f"run {se.run_id} has no recorded answers for event {se.seq} ({se.type}): it was written "
                    "before tprompt kept the scorer's answers, so it cannot be rescored without model calls",
                    hint="fork it with the new weights instead (tprompt fork RUN --at 1 ...)",
                )
            answered = answers[key]
            ev = evaluate_answers(answered, evaluation.objective, metrics=evaluation.metric_set,
                                  task=evaluation.task(answered.task),
                                  extra=judge_extra(judged.get(key), config.judge_rubric))
        elif isinstance(ev, StepCompleted):
            best_id, best_objective = step_best(state, ev.stage)
            ev = ev.model_copy(update={"best_prompt_id": best_id, "best_objective": best_objective})
        elif isinstance(ev, StageCompleted):
            ev = ev.model_copy(update={"top_k": stage_top_k(state, ev.stage, config.top_k)})
        add(ev)
    return out


def rescore_run(
    log: EventLog,
    run_id: str,
    weights: Mapping[str, float],
    *,
    metrics: Sequence[str] = (),
    judge: str | None = None,
    rubric: Mapping[str, Any] | None = None,
    tasks: Mapping[str, Task] | None = None,
    files: Mapping[str, RecordedFile] | None = None,
) -> str:
    """Fork ``run_id`` as a new run evaluated under ``weights`` (merged into its own) and with ``metrics``
    added to its own (a metric named again is re-created at its current version); returns the new id.

    ``files``: the run's recorded files as the new run records them (their current hashes, when the
    caller accepted a change: :func:`tprompt.run_files.check_files`).

    ``judge`` (a model spec) or ``rubric`` (the config key's value) change the
    LLM judge: every answer set is judged again (judge calls only, through the
    recorder, filed under the new run; 0 scorer calls). The first answer set judged is a probe, as in a run:
    when none of the judge's first replies can be read, nothing more is judged and no run is written.

    Raises:
        UnknownRun, ConfigError (bad weights, metrics or rubric), UsageError (a run without recorded answers),
        JudgeUnparseable (the judge's first batch gave no score).
    """
    run_id = log.resolve(run_id)
    state = log.state(run_id)
    if state.config is None:
        raise UsageError(f"run {run_id} has no run configuration, so it cannot be rescored")
    merged = {**state.config.weights, **weights}
    refs = list(dict.fromkeys([*state.config.metrics, *(m.strip() for m in metrics)]))
    versions = {k: v for k, v in state.config.metric_versions.items() if k not in metrics}
    events = list(log.events(run_id))
    changes: dict[str, Any] = {"weights": merged, "metrics": refs, "metric_versions": versions}
    if files is not None:
        changes["files"] = dict(files)
    if judge is not None:
        changes["judge"] = judge
    if rubric is not None:
        changes["rubric"] = rubric
    from .config import make_config

    config = make_config({**state.config.model_dump(), **changes}, where="rescore")
    if config.judge_rubric != state.config.judge_rubric:
        # A new rubric: the run's weights on criteria it no longer asks about are dropped (weights given
        # here are kept, and checked below).
        criteria = {judge_metric(c.name) for c in config.judge_rubric.criteria} if config.judge_rubric else set()
        kept = {k: v for k, v in state.config.weights.items() if not is_judge_metric(k) or k in criteria}
        config = config.model_copy(update={"weights": {**kept, **weights}})
    # The weights are checked against the new config's metrics and its judge's criteria (a new rubric's
    # criteria are weighable), then each metric's version is pinned as the new run records it.
    evaluation = Evaluation.open(config, tasks=tasks, task_names=answered_tasks(events))
    config = config.model_copy(update={"metric_versions": metric_versions(evaluation.metric_set)})
    config = _record_new_modules(config)
    # The fork's own history starts after the lineage's run.created (seq 1) and its run.forked (seq 2).
    base = fold(events[:1], run_id=run_id).model_copy(
        update={"config": config, "target_task": state.target_task, "last_seq": 2}
    )
    new_id = new_run_id()
    recorder = None
    if config.judge is not None and (config.judge, config.judge_rubric) != (state.config.judge, state.config.judge_rubric):
        from ..models import Recorder

        recorder = Recorder(log, run_id=new_id, prices=config.prices)
    try:
        rejudge = _rejudge(log, recorder, new_id, config, evaluation) if recorder is not None else None
        rescored = rescore_events(events[1:], config, base, rejudge=rejudge, evaluation=evaluation)
    except JudgeUnparseable as exc:
        exc.hint = f"no run was written; rescore with another judge: tprompt rescore {run_id} --judge SPEC"
        raise
    finally:
        if recorder is not None:
            recorder.close()
    if state.status in ("running", "paused", "failed") and rescored:
        # The copy stands where its parent stood, and no process runs it: paused (resumable), for the
        # parent's own reason when it was paused (a review, a budget), else for the rescore's.
        pauses = [se.event for se in events if isinstance(se.event, RunPaused)]
        reason = pauses[-1].reason if state.status == "paused" and pauses else "rescore"
        rescored.append(RunPaused(reason=reason))
    return log.fork(
        run_id, 1, config=config, target_task=state.target_task or config.target_task, run_id=new_id,
        name=f"{state.name or run_id} rescored", events=rescored,
    )


def _record_new_modules(config: RunConfig) -> RunConfig:
    """``config`` with the file and hash of each metric module it names and has not recorded yet (a ``--metric
    MODULE:FUNCTION`` added here), as a new run records them; the tasks and the recorded files stay as they are."""
    from ..run_files import record_files

    found = record_files(config, given=[*config.source_tasks, config.target_task]).files
    files = {**found, **config.files}
    return config if files == config.files else config.model_copy(update={"files": files})


def answered_tasks(events: Sequence[StoredEvent]) -> list[str]:
    """The tasks a run's recorded answer sets are on, in order of first answer."""
    return list(dict.fromkeys(se.event.task for se in events if isinstance(se.event, (CandidateAnswered, TestAnswered))))


def _rejudge(log: EventLog, recorder: Any, run_id: str, config: RunConfig, evaluation: Evaluation) -> Rejudge:
    """The judge of ``config`` over recorded answers, its calls filed under ``run_id`` at each judged event's seq."""
    from ..judge.answers import judge_answered

    assert config.judge_rubric is not None
    model = open_judge(config)
    judged = 0

    def rejudge(answered: Answered, seq: int) -> Judged:
        nonlocal judged
        task = evaluation.task(answered.task)
        result = judge_answered(
            log, answered, rubric=config.judge_rubric, model=model,  # type: ignore[arg-type]
            site=recorder.at("judge", run_id=run_id, step=judge_step(answered), seq=seq), task=task,
            examples=task.sample(judge_examples(answered, config), split=answered.split, seed=config.seed),
            seed=config.seed,
            probe=judged == 0,  # the first judging stops if the judge's replies cannot be read, as in a run
        )
        judged += 1
        return result

    return rejudge


__all__ = ("parse_weights", "rescore_events", "rescore_run")
