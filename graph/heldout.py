"""Scoring one prompt the way a run scores its held-out test, outside any run (``tprompt eval``).

A run tests a prompt in three steps: the scorer answers the target task's
test rows under it (the ``test`` node: ``test.answered``), the judge judges
those answers when one is configured (``test.judged``), and the evaluator turns
them into metrics and the objective (``evaluate_answers``: ``prompt.tested``).
:func:`score_held_out` runs the same three steps with the same functions on a
run's resources (:class:`RunResources`: the task, template, metric set,
objective, mode and models its config names), and appends nothing: the
events are built, not stored. Every model call goes through the recorder, so
it is cached in the database like a run's, filed under no run. Scoring the
best prompt of a run with its settings (test split, ``test_examples``,
``seed``) gives the run's own test metrics, from its cached calls. A config with a
``program`` has the program answer each row under the prompt set, as a run's test does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..evaluator import ScoreMode, answer_prompt
from ..evaluator.program import PROGRAM_AGENT, answer_program
from ..evaluator.scoring import ScoredAnswer
from ..judge.answers import judge_answered
from ..models import Recorder
from ..stores import EventLog
from ..stores.events import Judged, PromptTested, TestAnswered, prompt_id_of
from .context import RunContext
from .nodes import evaluate_answers, judge_extra, stored_answers
from .resources import RunResources

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class HeldOutScore:
    """One prompt scored as a run's held-out test: the evaluator's result and what it was computed from."""

    #: the evaluator's result (metrics, objective, undefined counts, per-example values), as a run records it
    tested: PromptTested
    mode: ScoreMode
    #: the scorer's answers, parsed (raw replies, gold answers, cache hits)
    answers: tuple[ScoredAnswer, ...]
    #: the judge's judgements (None without a judge)
    judged: Judged | None

    @property
    def cache_hits(self) -> int:
        return sum(a.cache_hit for a in self.answers)


def score_held_out(
    resources: RunResources,
    *,
    log: EventLog,
    recorder: Recorder,
    split: str = "test",
    n: int,
    progress: Progress | None = None,
    probe_judge: bool = False,
) -> HeldOutScore:
    """Score ``resources.config``'s original prompt (under its template) on ``n`` rows of its target task.

    The rows are the run's draw (``seed``) from ``split``; the scorer's and the
    judge's calls go through ``recorder`` (cached, filed under no run); the
    judge reads the scorer's replies back from ``log``'s transcripts. With
    ``probe_judge`` the judge is sent a first batch alone and stopped when it can
    read none of it, as in a run's first judging.

    Raises:
        UsageError: the mode does not fit the task or model.
        ModelCallFailed: a model failed after retries.
        JudgeUnparseable: ``probe_judge``, and no reply of the judge's first batch gave a score.
    """
    config = resources.config
    ctx = RunContext(log=log, run_id="", resources=resources, recorder=recorder)  # no run: nothing is appended
    task = ctx.task(config.target_task)
    examples = ctx.examples(task.name, split, n)
    mode = ctx.mode_for(task)
    text = config.original_prompt
    if ctx.program is not None:  # the user's program answers each row under its prompt set, as in a run
        answers = answer_program(ctx.program, text, examples, task=task, model=resources.scorer,
                                 site=recorder.at(PROGRAM_AGENT), progress=_labelled(progress, "scoring"),
                                 timeout=config.program_timeout, abandoned=resources.pause.is_set)
    else:
        answers = answer_prompt(text, examples, task=task, model=resources.scorer, recorder=recorder.at("scorer"),
                                mode=mode, template=ctx.template_for(task),
                                progress=_labelled(progress, "scoring"))
    # A held-out result in the event a run records (its role is a label here: the event is never stored).
    answered = TestAnswered(role="original", prompt_id=prompt_id_of(text), text=text, task=task.name, mode=mode,
                            scorer_calls=len(answers),
                            answers=stored_answers(answers, program=ctx.program is not None))
    judged = None
    rubric = config.judge_rubric
    if resources.judge is not None and rubric is not None:
        judged = judge_answered(log, answered, rubric=rubric, model=resources.judge, site=recorder.at("judge"),
                                task=task, examples=examples, seed=config.seed, progress=_labelled(progress, "judging"),
                                probe=probe_judge)
    tested = evaluate_answers(answered, resources.objective, metrics=resources.metric_set, task=task,
                              extra=judge_extra(judged, rubric))
    assert isinstance(tested, PromptTested)  # the evaluator's result of a test.answered
    return HeldOutScore(tested=tested, mode=mode, answers=tuple(answers), judged=judged)


def _labelled(progress: Progress | None, label: str) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda done, total: progress(label, done, total)


__all__ = ("HeldOutScore", "score_held_out")
