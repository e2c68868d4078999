"""The LLM judge agent: every recorded answer scored on a rubric's criteria, with a short rationale.

One request per answer names every criterion that applies (a criterion that
needs a reference is left out for a question without one). The reply is one
line per criterion, ``relevance: 4 | on topic``; :func:`parse_judgement`
reads it leniently (bold names, ``4/5``, a JSON object) and a criterion it
cannot read becomes a :class:`Judgement` with ``score=None`` and an ``error``,
never a silent 0. :func:`judgement_metrics` turns a ``candidate.judged`` into
the metrics ``judge_<criterion>``: the mean normalized score over parsed
judgements (None when none parsed).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..evaluator.prompts import options_block
from ..models.types import ChatRequest
from ..stores.events import Judged, Judgement
from .prompts import JUDGE_CRITERION, JUDGE_PROMPT, JUDGE_REPLY_LINE, JUDGE_TEMPLATES
from .rubric import Criterion, Rubric, judge_metric

#: The most characters of a rationale kept in the event.
RATIONALE_CHARS = 200
_NUMBER = r"([-+]?\d+(?:\.\d+)?)"


@dataclass(frozen=True, slots=True)
class JudgeItem:
    """One answer to judge: what the judge is shown about it."""

    example_id: str
    question: str
    answer: str
    #: the reference (gold) answer, "" when the question has none
    reference: str = ""


def criteria_for(rubric: Rubric, item: JudgeItem) -> tuple[Criterion, ...]:
    """The rubric's criteria that apply to ``item`` (those needing a reference only when it has one)."""
    return tuple(c for c in rubric.criteria if not c.needs_reference or item.reference.strip())


def judge_request(rubric: Rubric, item: JudgeItem, *, task_description: str, prompt: str,
                  seed: int | None = None) -> ChatRequest:
    """The judge's request for one answer (temperature 0; the rubric's ref is in ``templates``)."""
    criteria = criteria_for(rubric, item)
    low, high = rubric.scale
    reference = f"\nReference answer:\n{item.reference.strip()}\n" if item.reference.strip() else ""
    text = JUDGE_PROMPT.render(
        low=str(low), high=str(high),
        criteria="\n".join(JUDGE_CRITERION.render(name=c.name, description=c.description) for c in criteria),
        task_description=task_description.strip(), prompt=prompt.strip(), question=item.question.strip(),
        reference=reference, answer=item.answer.strip() or "(empty)",
        reply_format="\n".join(JUDGE_REPLY_LINE.render(name=c.name) for c in criteria),
    )
    return ChatRequest(
        messages=(("system", rubric.instruction), ("user", text)),
        temperature=0.0,
        max_tokens=24 + 40 * len(criteria),
        seed=seed,
        templates=(*JUDGE_TEMPLATES, rubric.ref),
    )


def parse_judgement(reply: str, rubric: Rubric, item: JudgeItem, *, call_id: str | None = None) -> list[Judgement]:
    """One :class:`Judgement` per applicable criterion from the judge's ``reply``.

    A criterion with no readable score in the reply, or a score outside the
    rubric's scale, is recorded with ``score=None`` and the reason in ``error``.
    """
    found = _from_json(reply)
    out = []
    low, high = rubric.scale
    for c in criteria_for(rubric, item):
        score, rationale = found.get(c.name) or _from_lines(reply, c.name)
        error = None
        if score is None:
            error = f"no score for {c.name} in the judge's reply"
        elif not low <= score <= high:
            error = f"score {score:g} for {c.name} is outside the scale {low}..{high}"
            score = None
        out.append(Judgement(example_id=item.example_id, criterion=c.name, score=score,
                             rationale=rationale[:RATIONALE_CHARS], error=error, call_id=call_id))
    return out


def _from_lines(reply: str, name: str) -> tuple[float | None, str]:
    # "relevance: 4 | why", "- **Relevance**: 4/5 - why", "relevance = 4 (why)"
    pattern = re.compile(
        rf"^[\s\-*#>]*\**{re.escape(name)}\**\s*[:=]\s*\**\s*{_NUMBER}\s*(?:/\s*\d+)?\**\s*(?:[|\-–—:,.;]\s*)?(.*)$",
        re.IGNORECASE | re.MULTILINE,
    )
    m = pattern.search(reply)
    if not m:
        return None, ""
    return float(m.group(1)), m.group(2).strip().strip("()").strip()


def _from_json(reply: str) -> dict[str, tuple[float | None, str]]:
    """``{"relevance": 4}`` or ``{"relevance": {"score": 4, "rationale": "..."}}`` anywhere in the reply."""
    start, end = reply.find("{"), reply.rfind("}")
    if start < 0 or end <= start:
        return {}
    try:
        data = json.loads(reply[start : end + 1])
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    out: dict[str, tuple[float | None, str]] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            score, why = value.get("score"), str(value.get("rationale", value.get("reason", "")))
        else:
            score, why = value, ""
        if isinstance(score, (int, float)) and not isinstance(score, bool):
            out[str(key).lower()] = (float(score), why)
    return out


def judgement_metrics(judged: Judged, rubric: Rubric) -> dict[str, float | None]:
    """The judge's metrics of one answer set: ``judge_<criterion>`` -> mean normalized score, None if none parsed.

    Pure: a function of the event and the rubric (its scale) alone.
    """
    out: dict[str, float | None] = {}
    for c in rubric.criteria:
        scores = [rubric.normalized(j.score) for j in judged.judgements if j.criterion == c.name and j.score is not None]
        out[judge_metric(c.name)] = sum(scores) / len(scores) if scores else None
    return out


def format_question(question: str, choices: Sequence[str] | None) -> str:
    """A question as the judge sees it: the text, then its lettered options if any."""
    q = question.strip()
    if choices:
        q += "\n" + options_block(tuple(choices))
    return q


__all__ = (
    "RATIONALE_CHARS",
    "JudgeItem",
    "criteria_for",
    "format_question",
    "judge_request",
    "judgement_metrics",
    "parse_judgement",
)
