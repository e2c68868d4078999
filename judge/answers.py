"""The LLM judge over a run's recorded answers: what the ``judge`` node and ``tprompt rescore`` share.

:func:`judge_answered` turns one answer set (``candidate.answered``,
``test.answered``) into its judgement (``candidate.judged``, ``test.judged``): it shows the judge each answer (the scorer's reply as
the transcript recorded it; in logprob mode, the option chosen), the question
and the reference, one request per answer, through a recorder call site
(cached, a transcript row with agent ``judge``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from .._text import printable
from ..errors import JudgeUnparseable
from ..evaluator import Example, Task
from ..models import ChatBackend
from ..models.recorder import CallSite
from ..stores import EventLog
from ..stores.events import Answer, Answered, CandidateJudged, Judged, TestAnswered, TestJudged
from .request import JudgeItem, format_question, judge_request, parse_judgement
from .rubric import Rubric

#: Answers the run's first judging sends before the rest: when the judge can read none of them (a model that
#: ignores the reply format), the run stops there instead of paying for every answer of the run.
PROBE_BATCH = 8


def answer_text(log: EventLog, answered: Answered, answer: Answer, example: Example | None) -> str:
    """What the scorer answered, as the judge is shown it."""
    if answered.mode == "logprob" or answer.call_id is None:
        if answer.parsed is None:
            return "(no answer)"
        choices = example.choices if example is not None else None
        idx = ord(answer.parsed[:1].upper()) - 65 if answer.parsed else -1
        if choices and 0 <= idx < len(choices) and len(answer.parsed) == 1:
            return f"{answer.parsed}) {choices[idx]}"
        return answer.parsed
    row = log.transcripts.call(answer.call_id)
    text = log.transcripts.body(row.response_hash) if row is not None else None
    return text if text is not None else (answer.parsed or "(no answer)")


def reference_of(example: Example | None) -> str:
    """The reference answer the judge compares with ("" when there is none).

    An open-ended row's references (one, or a list shown one per line), else the gold answer.
    """
    if example is None:
        return ""
    refs = [r.strip() for r in example.references if r.strip()]
    if refs:
        return refs[0] if len(refs) == 1 else "\n".join(f"- {r}" for r in refs)
    if not example.answer.strip():
        return ""
    return f"{example.answer}) {example.answer_text}" if example.choices and example.answer_text else example.answer


def judge_answered(
    log: EventLog,
    answered: Answered,
    *,
    rubric: Rubric,
    model: ChatBackend,
    site: CallSite,
    task: Task,
    examples: Sequence[Example],
    seed: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    probe: bool = False,
) -> Judged:
    """The judge's judgement of ``answered``, of the same split (its calls filed under ``site``).

    With ``probe`` (the run's first judging), the first :data:`PROBE_BATCH` answers are judged first, and
    the rest only if at least one of those replies gave a readable score.

    Raises:
        ModelCallFailed: the judge model failed after retries (recorded; resume retries it).
        JudgeUnparseable: ``probe``, and no reply of the first batch could be read (those calls are recorded).
    """
    by_id: Mapping[str, Example] = {e.id: e for e in examples}
    items = []
    for a in answered.answers:
        ex = by_id.get(a.example_id)
        question = format_question(ex.question, ex.choices) if ex is not None else f"(example {a.example_id})"
        items.append(JudgeItem(example_id=a.example_id, question=question,
                               answer=answer_text(log, answered, a, ex), reference=reference_of(ex)))
    requests = [judge_request(rubric, item, task_description=task.description, prompt=answered.text, seed=seed)
                for item in items]
    if progress:
        progress(0, len(requests))
    head = PROBE_BATCH if probe else len(requests)
    results = site.chat(model, requests[:head])
    judgements = [j for item, r in zip(items, results) for j in parse_judgement(r.text, rubric, item, call_id=r.call_id)]
    if probe and judgements and not any(j.score is not None for j in judgements):
        sample = printable(" ".join(results[0].text.split()))
        raise JudgeUnparseable(
            f"judge {model.spec}: none of its first {len(results)} replies gave a score in the rubric's format "
            f"({', '.join(c.name for c in rubric.criteria)}: <score> | <why>); tprompt stopped before judging more. "
            f'First reply: "{sample[:120]}"',
            spec=model.spec,
        )
    if head < len(requests):
        more = site.chat(model, requests[head:])
        judgements += [j for item, r in zip(items[head:], more)
                       for j in parse_judgement(r.text, rubric, item, call_id=r.call_id)]
    if progress:
        progress(len(requests), len(requests))
    if isinstance(answered, TestAnswered):
        return TestJudged(role=answered.role, prompt_id=answered.prompt_id, task=answered.task, judge=model.spec,
                          rubric=rubric.ref, judge_calls=len(requests), judgements=judgements)
    return CandidateJudged(
        stage=answered.stage, step=answered.step, prompt_id=answered.prompt_id, task=answered.task,
        rung=answered.rung, judge=model.spec, rubric=rubric.ref, judge_calls=len(requests), judgements=judgements,
    )


__all__ = ("PROBE_BATCH", "answer_text", "judge_answered", "reference_of")
