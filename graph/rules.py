"""The algorithm's rules over (run state, config): where the run goes next, and what each step does.

Everything here is a pure function of the run's projection (:class:`RunState`,
folded from its log) and its :class:`RunConfig`: no models, no store, no
LangGraph. :func:`next_node` is the one routing rule; the graph calls it at
every branching point (``resume_at``, ``after_propose``, ``after_evaluate``,
``after_step``) with that point's allowed destinations as LangGraph's path map,
so a destination outside the drawn edges is refused, not taken. The other
rules (the scoring still due in a step, racing rungs, the scorer budget,
patience, the stage's top-k) are what :func:`next_node` and the nodes share.

Because the next node depends on the state alone, a run killed anywhere
re-enters the graph at the node an uninterrupted run would have run next.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..stores.events import (
    Answered,
    CandidateAnswered,
    Event,
    PromptCandidate,
    Role,
    Stage,
    StageCompleted,
    StepCompleted,
    TestAnswered,
    prompt_id_of,
    tested_roles,
)
from ..stores.projection import RunState, ScoredPrompt
from .config import RunConfig

END = "__end__"


@dataclass(frozen=True, slots=True)
class ScoreJob:
    """One candidate to score on one task (one racing rung, or all the step's examples)."""

    candidate: PromptCandidate
    task: str
    rung: int
    n_examples: int
    #: scorer calls this job adds (racing: the rung's examples beyond the previous rung's)
    new_calls: int


# -- where the run goes next ------------------------------------------------------------------------


def next_node(run: RunState, config: RunConfig, *, chain: Sequence[str] = ()) -> str:
    """The node the run goes to next (``END`` when it is done), from its state and config alone.

    Args:
        run: the run's projection.
        config: the run's configuration.
        chain: nodes inserted between ``propose`` and the scoring (a critic,
            say), in order; a proposed step goes to the first of them that has
            not revised it yet (``step.revised`` by its name).
    """
    if run.status in ("completed", "failed"):
        return END
    if run.unevaluated and run.in_flight is None:
        return _judge_or_evaluate(run, config)  # test answers
    for stage in stages(config):
        if stage in run.stages_completed:
            continue
        if run.stage != stage:
            return "start_source" if stage == "source" else ("transfer" if config.transfer else "start_target")
        if run.in_flight is not None:
            return _in_step(run, config, chain)
        if run.stage_stopped or run.step >= config.stage_steps(stage) or budget_spent(run, config):
            return "close_step"
        return "propose"
    return "test" if untested_role(run, config) is not None else "finish"


def _in_step(run: RunState, config: RunConfig, chain: Sequence[str]) -> str:
    """Inside the step in flight: its critics, a person's review, the scoring left, its evaluation, or its close."""
    if run.step_untouched() and (run.in_flight or 0) > 0:
        for name in chain:
            if name not in run.revisions:
                return name
    if run.awaiting_review():
        return "review"
    if score_jobs(run, config):
        return "score"
    return _judge_or_evaluate(run, config) if run.unevaluated else "close_step"


def _judge_or_evaluate(run: RunState, config: RunConfig) -> str:
    """Recorded answers go to the judge first when one is configured and has not judged them all."""
    return "judge" if config.judge is not None and run.unjudged() else "evaluate"


def stages(config: RunConfig) -> tuple[Stage, ...]:
    """The stages a run of ``config`` goes through, in order."""
    return ("source", "target") if config.transfer else ("target",)


def untested_role(run: RunState, config: RunConfig) -> Role | None:
    """The next role whose prompt the test split has not scored yet (None: all tested)."""
    return next((r for r in tested_roles(config.transfer) if r not in run.tested), None)


def calls_of_test(run: RunState, prompt_id: str, task: str, n_answers: int) -> int:
    """Scorer calls a test of ``prompt_id`` on ``task`` adds to the run's count: none when the run tested that
    prompt there already under another role (the same requests: cache hits), as racing's re-asked rows add
    none in training. ``scorer_calls`` counts the requests a run made, each once."""
    again = any(t.prompt_id == prompt_id and t.task == task for t in run.tested.values())
    return 0 if again else n_answers


# -- tasks and prompts -----------------------------------------------------------------------------


def stage_tasks(run: RunState, config: RunConfig, stage: Stage) -> list[str]:
    """The tasks ``stage`` scores its candidates on (a fork may have moved the target task)."""
    if stage == "source":
        return list(config.source_tasks) if config.transfer else []
    return [run.target_task or config.target_task]


def step_label(stage: str, step: int) -> str:
    """How a step is named in transcripts (``source:2``)."""
    return f"{stage}:{step}"


def judge_step(answered: Answered) -> str:
    """The step the judge's calls on ``answered`` are filed under: its training step, or ``test``."""
    if isinstance(answered, TestAnswered):
        return "test"
    return step_label(answered.stage, answered.step)


def judge_examples(answered: Answered, config: RunConfig) -> int:
    """How many of its task's rows ``answered`` answered (the sample the judge is shown again)."""
    return config.test_examples if isinstance(answered, TestAnswered) else config.examples


def original(run: RunState, config: RunConfig) -> PromptCandidate:
    """The run's original prompt."""
    if run.original_prompt is not None:
        return run.original_prompt
    text = config.original_prompt
    return PromptCandidate(prompt_id=prompt_id_of(text), text=text, origin="original")


def prompt_for_role(run: RunState, config: RunConfig, role: Role) -> PromptCandidate:
    """The prompt tested as ``role`` (the best of a stage, or the original when the stage scored none)."""
    if role == "original":
        return original(run, config)
    best: ScoredPrompt | None = run.best("source" if role == "best_source" else "target")
    if best is None:
        return original(run, config)
    return PromptCandidate(prompt_id=best.prompt_id, text=best.text)


# -- the scorer budget and racing ---------------------------------------------------------------------


def budget_left(run: RunState, config: RunConfig) -> int | None:
    """Scorer calls on training examples still allowed (None: no cap)."""
    if config.scorer_budget is None:
        return None
    used = run.scorer_calls.get("source", 0) + run.scorer_calls.get("target", 0)
    return max(0, config.scorer_budget - used)


def rollouts_used(run: RunState) -> int:
    """Scorer calls on training examples so far (both stages), answers not yet evaluated included:
    the rollouts of ``--max-rollouts`` (the unit GEPA and MIPROv2 report budgets in)."""
    evaluated = run.scorer_calls.get("source", 0) + run.scorer_calls.get("target", 0)
    return evaluated + sum(a.scorer_calls for a in run.unevaluated if a.split != "test")


def job_calls(job: ScoreJob, rows: Mapping[str, int]) -> int:
    """Scorer calls ``job`` makes on a task with ``rows[job.task]`` training rows drawn: a task with fewer rows
    than the job asks for answers only the rows it has (the same count its ``candidate.answered`` records)."""
    have = rows.get(job.task)
    if have is None:
        return job.new_calls
    return min(job.n_examples, have) - min(job.n_examples - job.new_calls, have)


def rollouts_fit(
    run: RunState, jobs: Sequence[ScoreJob], max_rollouts: int | None, rows: Mapping[str, int]
) -> tuple[list[ScoreJob], bool]:
    """The leading ``jobs`` that keep the rollouts within ``max_rollouts``, and whether any job was left out.

    ``rows``: the training rows drawn for each task (fewer than ``examples`` when the task has fewer).
    """
    if max_rollouts is None:
        return list(jobs), False
    used, fit = rollouts_used(run), list[ScoreJob]()
    for job in jobs:
        calls = job_calls(job, rows)
        if used + calls > max_rollouts:
            return fit, True
        fit.append(job)
        used += calls
    return fit, False


def rollouts_exhausted(run: RunState, config: RunConfig, max_rollouts: int | None, rows: Mapping[str, int]) -> bool:
    """No new step fits in ``max_rollouts``: not even its cheapest scoring job (so it is not proposed).

    ``rows``: the training rows drawn for each of the stage's tasks; a job on a task with fewer rows costs fewer.
    """
    if max_rollouts is None:
        return False
    cheapest = cheapest_job(config)
    tasks = stage_tasks(run, config, run.stage) if run.stage is not None else []
    cost = min((min(cheapest, rows.get(t, cheapest)) for t in tasks), default=cheapest)
    return rollouts_used(run) + cost > max_rollouts


def budget_spent(run: RunState, config: RunConfig) -> bool:
    """True when not even the cheapest scoring job fits in the budget left."""
    left = budget_left(run, config)
    if left is None:
        return False
    return left < cheapest_job(config)


def cheapest_job(config: RunConfig) -> int:
    """Scorer calls of the smallest scoring job a step can run: the first racing rung, else a full set."""
    return rung_sizes(config)[0] if config.budget == "racing" else config.examples


def full_run_cost(config: RunConfig, n_sources: int) -> int:
    """Training scorer calls of a transfer run with every step full (no budget, no racing cut)."""
    per_step = config.candidates * config.examples
    source = n_sources * (config.examples + config.steps * per_step)
    target = config.top_k * config.examples + config.stage2_steps * per_step
    return source + target


def steps_to_spend(config: RunConfig, budget: int) -> int:
    """An upper bound on the steps that can spend ``budget`` scorer calls: every non-empty step scores at
    least one candidate on its cheapest job. The budget (:func:`budget_spent`), not this bound, ends a stage."""
    return math.ceil(budget / cheapest_job(config)) + 1


def rung_sizes(config: RunConfig) -> list[int]:
    """Examples per racing rung: successive halving up to ``examples``, rungs that add none dropped."""
    n, rungs = config.examples, config.racing_rungs
    sizes = [max(1, math.ceil(n / 2 ** (rungs - 1 - r))) for r in range(rungs)]
    out: list[int] = []
    for size in sizes:
        if not out or size > out[-1]:
            out.append(size)
    return out


def score_jobs(run: RunState, config: RunConfig) -> list[ScoreJob]:
    """The scoring still to do in the step in flight, in a fixed order (one racing rung at a time).

    A job whose answers are recorded but not yet evaluated counts as done. Under
    a scorer budget, the jobs that fit (none: the step closes with what is scored).
    """
    step = run.in_flight
    if step is None or run.stage is None:
        return []
    stage: Stage = run.stage
    tasks = stage_tasks(run, config, stage)
    done = {(x.prompt_id, x.task, x.rung): x for x in run.step_scores(stage, step)}
    answered = {(a.prompt_id, a.task, a.rung) for a in run.unevaluated if isinstance(a, CandidateAnswered)}
    alive = list(run.pending)
    racing = config.budget == "racing" and step > 0 and len(alive) > 1
    sizes = rung_sizes(config) if racing else [config.examples]
    prev = 0
    for rung, size in enumerate(sizes):
        todo = [
            ScoreJob(c, t, rung, size, size - prev)
            for c in alive
            for t in tasks
            if (c.prompt_id, t, rung) not in done and (c.prompt_id, t, rung) not in answered
        ]
        if todo:
            return _within_budget(run, config, todo)
        if any(k not in done for k in ((c.prompt_id, t, rung) for c in alive for t in tasks)):
            return []  # this rung's answers are not evaluated yet: the next rung's ranking needs them
        if rung < len(sizes) - 1:
            ranked = sorted(alive, key=lambda c: -sum(done[(c.prompt_id, t, rung)].objective for t in tasks))
            alive = ranked[: max(1, math.ceil(len(ranked) / 2))]
        prev = size
    return []


def _within_budget(run: RunState, config: RunConfig, todo: list[ScoreJob]) -> list[ScoreJob]:
    left = budget_left(run, config)
    if left is None:
        return todo
    fit, spent = [], sum(a.scorer_calls for a in run.unevaluated)
    for job in todo:
        if spent + job.new_calls > left:
            break
        fit.append(job)
        spent += job.new_calls
    return fit


# -- closing a step and a stage --------------------------------------------------------------------------


def patience_exhausted(run: RunState, config: RunConfig, stage: Stage, step: int) -> bool:
    """The stop rule: the stage's best has not improved over the last ``patience`` steps."""
    patience = config.patience
    if patience is None or step < patience:
        return False
    scores = run.stage_scores(stage)

    def best_upto(k: int) -> float:
        vals = [x.objective for x in scores if x.step <= k]
        return max(vals) if vals else float("-inf")

    return best_upto(step) <= best_upto(step - patience)


def stage_top_k(run: RunState, stage: Stage, k: int) -> list[str]:
    """The ids of ``stage``'s ``k`` best prompts, best first (what ``stage.completed`` records)."""
    return [h.prompt_id for h in reversed(run.history(stage))][:k]


def step_best(run: RunState, stage: Stage) -> tuple[str | None, float | None]:
    """``stage``'s best prompt so far and its objective (what ``step.completed`` records)."""
    best = run.best(stage)
    return (best.prompt_id, best.objective) if best else (None, None)


def closing_events(run: RunState, config: RunConfig, stage: Stage) -> list[Event]:
    """What closes the step in flight (best so far, stop rule) and, when due, the stage (its top-k)."""
    events: list[Event] = []
    if run.in_flight is not None:
        step = run.in_flight
        stop = patience_exhausted(run, config, stage, step) or budget_spent(run, config)
        best_id, best_objective = step_best(run, stage)
        events.append(StepCompleted(stage=stage, step=step, stop=stop, best_prompt_id=best_id,
                                    best_objective=best_objective))
        last_step = step >= config.stage_steps(stage) or stop
    else:
        last_step = True
    if last_step:
        events.append(StageCompleted(stage=stage, top_k=stage_top_k(run, stage, config.top_k)))
    return events


__all__ = (
    "END",
    "ScoreJob",
    "budget_left",
    "budget_spent",
    "calls_of_test",
    "closing_events",
    "job_calls",
    "next_node",
    "original",
    "patience_exhausted",
    "prompt_for_role",
    "rollouts_exhausted",
    "rollouts_fit",
    "rollouts_used",
    "rung_sizes",
    "score_jobs",
    "stage_tasks",
    "stage_top_k",
    "stages",
    "step_best",
    "step_label",
    "untested_role",
)
