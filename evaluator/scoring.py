"""Scoring a prompt: ask the scorer model, parse its answers, compute the metrics.

Two modes:

* ``generate`` (any backend): the model writes "Answer: ..." and
  "Confidence: ...%"; the confidence is the verbalized one and IFR is the share
  of answers in that format. An unparseable answer is wrong with confidence 0.
* ``logprob`` (backends with ``supports_option_probs``; tasks with options or a
  fixed answer space): the answer is the most probable option after
  "Answer: ", the confidence its probability (renormalized over the options).
  The model cannot leave the format, so IFR is 1 by construction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal, cast

from pydantic import BaseModel, ConfigDict

from ..errors import UsageError
from .metrics import compute_metrics
from .objective import ObjectiveWeights, objective
from .parsing import MISSING_CONFIDENCE, gold_answer, is_correct, parse_output, parse_reply
from .prompts import SCORER_TEMPLATE, scorer_user_message
from .task_model import LETTERS, Example, Task
from .template import ChatTemplate, row_values

if TYPE_CHECKING:  # the agents package imports nothing from here; keep it that way at runtime too
    from ..models import ChatBackend, Recorder
    from ..models.recorder import CallSite

ScoreMode = Literal["generate", "logprob"]

#: Longest answer the scorer may write in generate mode (tokens). The format
#: needs ~10; the slack lets a prompt that asks for brief reasoning still finish.
SCORER_MAX_TOKENS = 96
#: Longest reply on an open-ended task (kind ``text``), where the whole reply is the answer.
OPEN_SCORER_MAX_TOKENS = 192

#: Shown with logprob-mode results.
LOGPROB_IFR_NOTE = "IFR is 1 by construction in logprob mode (answers are read from option probabilities)"


class ScoredAnswer(BaseModel):
    """One answer of the scorer, parsed and judged."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    example_id: str
    raw: str
    parsed: str | None
    followed_format: bool
    correct: bool
    confidence: float
    gold: str | None = None
    call_id: str | None = None
    cache_hit: bool = False
    #: a program's failure on this example (its one-line reason); None for a model's answer
    error: str | None = None
    #: a program's answer: the names of its prompts the row's calls carried (None for a model's answer)
    prompts: tuple[str, ...] | None = None


class Evaluation(BaseModel):
    """A prompt's scores on a set of examples."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    task: str
    n_examples: int
    mode: ScoreMode
    metrics: dict[str, float | None]
    objective: float
    scorer_calls: int  # requests made for this evaluation (cache hits included)
    answers: tuple[ScoredAnswer, ...]
    cache_hits: int = 0
    notes: tuple[str, ...] = ()

    @property
    def n_parsed(self) -> int:
        return sum(a.parsed is not None for a in self.answers)

    @property
    def n_correct(self) -> int:
        return sum(a.correct for a in self.answers)


def has_options(task: Task) -> bool:
    """Whether ``task``'s answers are a closed set logprob mode can score: lettered options (multiple choice)
    or an answer space (a label task, e.g. ``Yes``/``No``)."""
    return task.kind == "choice" or (task.kind == "string" and bool(task.answer_space))


def resolve_mode(mode: str, task: Task, model: ChatBackend) -> ScoreMode:
    """``auto`` -> ``logprob`` where option probabilities can score ``task`` on ``model``, else ``generate``.

    Multiple choice: a model that scores options (its letters are one token each). A label task (an answer
    space): a model that scores each label's every token (``scores_whole_options``: local models), since a
    first-token reader (an OpenAI-compatible server's ``top_logprobs``) cannot score a multi-token label.
    Any other ``mode`` is returned as given (:func:`check_mode` refuses one that is neither).
    """
    if mode != "auto":
        return cast(ScoreMode, mode)
    if not has_options(task) or not model.supports_option_probs:
        return "generate"
    if task.kind == "choice" or getattr(model, "scores_whole_options", False):
        return "logprob"
    return "generate"


def check_mode(mode: str, task: Task, model: ChatBackend | None = None) -> None:
    """Raise UsageError unless ``mode`` can score ``task`` on ``model``."""
    if mode not in ("generate", "logprob"):
        raise UsageError(f"unknown scoring mode {mode!r}", hint="use 'generate' or 'logprob'")
    if mode == "logprob":
        if not has_options(task):
            raise UsageError(
                f"logprob mode needs a multiple-choice task or a label task (an answer space); {task.name} has "
                f"{task.kind} answers",
                hint="use --mode generate",
            )
        if model is not None and not getattr(model, "supports_option_probs", False):
            raise UsageError(
                f"model {model.spec} cannot give option probabilities",
                hint="use --mode generate, or a local model (smollm2, hf:...)",
            )


def _options(example: Example, task: Task) -> tuple[str, ...]:
    if example.choices:
        return tuple(LETTERS[: len(example.choices)])
    return tuple(task.answer_space or ())


def _messages(prompt: str, example: Example, task: Task, logprob: bool,
              template: ChatTemplate | None = None) -> tuple[tuple[str, str], ...]:
    """The scorer's request messages: the user's template rendered on the row, else the Q&A template."""
    if template is not None:
        return template.render(prompt, row_values(example))
    user = scorer_user_message(example, task, logprob=logprob)
    if prompt.strip():
        return (("system", prompt), ("user", user))
    return (("user", user),)


def score_prompt(
    prompt: str,
    examples: Sequence[Example],
    *,
    task: Task,
    model: ChatBackend,
    recorder: Recorder | CallSite,
    mode: ScoreMode = "generate",
    weights: ObjectiveWeights | None = None,
    progress: Callable[[int, int], None] | None = None,
    batch_size: int = 8,
    max_tokens: int = SCORER_MAX_TOKENS,
    template: ChatTemplate | None = None,
) -> Evaluation:
    """Score ``prompt`` (the system message) on ``examples`` of ``task``.

    Every model call goes through ``recorder`` (cached; one transcript row per
    request): a call site (``Recorder.at(...)``), or a recorder, whose calls are
    then filed as agent ``scorer`` in no run. ``progress(done, total)`` is
    called after each batch. Raises UsageError when ``mode`` does not fit the
    task or model.
    """
    # A Recorder is bound here; anything else already is a call site (chat / option_probs of (model, requests)).
    calls = recorder.at("scorer") if hasattr(recorder, "at") else recorder
    answers = answer_prompt(
        prompt, examples, task=task, model=model, recorder=calls, mode=mode,
        progress=progress, batch_size=batch_size, max_tokens=max_tokens, template=template,
    )
    logprob = mode == "logprob"
    total = len(answers)
    metrics = compute_metrics(
        [a.correct for a in answers], [a.confidence for a in answers], [a.followed_format for a in answers]
    )
    return Evaluation(
        task=task.name,
        n_examples=total,
        mode=mode,
        metrics=metrics,
        objective=objective(metrics, weights),
        scorer_calls=len(answers),
        cache_hits=sum(a.cache_hit for a in answers),
        answers=tuple(answers),
        notes=(LOGPROB_IFR_NOTE,) if logprob else (),
    )


def answer_prompt(
    prompt: str,
    examples: Sequence[Example],
    *,
    task: Task,
    model: ChatBackend,
    recorder: CallSite,
    mode: ScoreMode = "generate",
    progress: Callable[[int, int], None] | None = None,
    batch_size: int = 8,
    max_tokens: int = SCORER_MAX_TOKENS,
    template: ChatTemplate | None = None,
) -> list[ScoredAnswer]:
    """The scorer's part of :func:`score_prompt`: ``model`` answers ``examples`` under ``prompt``; no metrics.

    ``recorder`` is the call site every call is filed under (agent, run, step, seq).
    With ``template`` (the user's), each request is that template rendered on
    the row with ``prompt`` as its optimizable messages, nothing added, and the
    answer is read from the free reply (:func:`.parsing.parse_reply`); without,
    the bundled Q&A template. Raises UsageError when ``mode`` does not fit the task or model.
    """
    check_mode(mode, task, model)
    if task.kind == "text":
        max_tokens = max(max_tokens, OPEN_SCORER_MAX_TOKENS)
    examples = list(examples)
    total = len(examples)
    logprob = mode == "logprob"
    answers: list[ScoredAnswer] = []
    if progress:
        progress(0, total)
    for start in range(0, total, max(1, batch_size)):
        batch = examples[start : start + max(1, batch_size)]
        with _rows_reported(progress, start, len(batch), total):
            if logprob:
                answers.extend(_score_logprob(prompt, batch, task, model, recorder, template))
            else:
                answers.extend(_score_generate(prompt, batch, task, model, recorder, max_tokens, template))
        if progress:
            progress(len(answers), total)
    return answers



def _rows_reported(
    progress: Callable[[int, int], None] | None, start: int, size: int, total: int
) -> contextlib.AbstractContextManager[None]:
    """While a batch is answered, ``progress`` per row the model reports done (a local model answers a batch
    in one call: without this, 0/N and then a jump)."""
    from ..models.row_progress import rows_progress

    if progress is None:
        return contextlib.nullcontext()
    got = 0

    def more(n: int) -> None:
        nonlocal got
        got = min(size, got + n)
        progress(start + got, total)

    return rows_progress(more)


def _score_generate(
    prompt: str, batch: Sequence[Example], task: Task, model: ChatBackend, calls: CallSite, max_tokens: int,
    template: ChatTemplate | None,
) -> list[ScoredAnswer]:
    from ..models import ChatRequest

    requests = [
        ChatRequest(messages=_messages(prompt, ex, task, False, template), temperature=0.0, max_tokens=max_tokens,
                    templates=(_ref(template),))
        for ex in batch
    ]
    results = calls.chat(model, requests)
    out = []
    parse = parse_output if template is None else parse_reply
    for ex, res in zip(batch, results):
        parsed = parse(res.text, kind=task.kind, choices=ex.choices, answer_space=task.answer_space)
        if parsed.answer is None:
            confidence = 0.0  # unparseable: wrong, and no confidence to credit
        elif parsed.confidence is None:
            confidence = MISSING_CONFIDENCE
        else:
            confidence = parsed.confidence
        out.append(
            ScoredAnswer(
                example_id=ex.id,
                raw=res.text,
                parsed=parsed.answer,
                followed_format=parsed.followed_format,
                correct=is_correct(parsed.answer, ex, task),
                confidence=confidence,
                gold=gold_answer(ex, task),
                call_id=res.call_id,
                cache_hit=res.cache_hit,
            )
        )
    return out


def _ref(template: ChatTemplate | None) -> str:
    return SCORER_TEMPLATE.ref if template is None else template.ref


def _score_logprob(
    prompt: str, batch: Sequence[Example], task: Task, model: ChatBackend, calls: CallSite,
    template: ChatTemplate | None,
) -> list[ScoredAnswer]:
    from ..models import OptionsRequest

    # The user's template: the options (letters or labels) as the first tokens of the reply, nothing prepended.
    prefix = "Answer: " if template is None else ""
    requests = [
        OptionsRequest(messages=_messages(prompt, ex, task, True, template), options=_options(ex, task),
                       answer_prefix=prefix, templates=(_ref(template),))
        for ex in batch
    ]
    results = calls.option_probs(model, requests)
    out = []
    for ex, req, res in zip(batch, requests, results):
        best = max(range(len(res.probs)), key=lambda i: res.probs[i])
        parsed = req.options[best]
        out.append(
            ScoredAnswer(
                example_id=ex.id,
                raw=" ".join(f"{o}={p:.3f}" for o, p in zip(req.options, res.probs)),
                parsed=parsed,
                followed_format=True,
                correct=is_correct(parsed, ex, task),
                confidence=float(min(max(res.probs[best], 0.0), 1.0)),
                gold=gold_answer(ex, task),
                call_id=res.call_id,
                cache_hit=res.cache_hit,
            )
        )
    return out


__all__ = ("ScoredAnswer", "Evaluation", "answer_prompt", "score_prompt", "check_mode", "has_options", "resolve_mode",
           "SCORER_TEMPLATE", "ScoreMode")
