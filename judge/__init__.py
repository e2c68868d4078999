"""The LLM judge, in one place: its rubric (criteria as data), its prompts, its request and the parsing of its
reply, and the judging of a run's recorded answers (what the ``judge`` node and ``tprompt rescore`` share).

Its criteria become metrics named ``judge_<criterion>`` (:func:`judge_metric`). Names load on first use:
:mod:`tprompt.config` holds a :class:`Rubric` and imports :mod:`.rubric` alone, which imports nothing of tprompt's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_WHERE = {
    "DEFAULT_CRITERIA": ".rubric",
    "DEFAULT_INSTRUCTION": ".rubric",
    "JUDGE_PREFIX": ".rubric",
    "Criterion": ".rubric",
    "Rubric": ".rubric",
    "is_judge_metric": ".rubric",
    "judge_metric": ".rubric",
    "JudgeItem": ".request",
    "format_question": ".request",
    "judge_request": ".request",
    "judgement_metrics": ".request",
    "parse_judgement": ".request",
    "judge_answered": ".answers",
}

if TYPE_CHECKING:  # what a type checker sees; at run time each name loads on first use
    from .answers import judge_answered
    from .request import JudgeItem, format_question, judge_request, judgement_metrics, parse_judgement
    from .rubric import (
        DEFAULT_CRITERIA,
        DEFAULT_INSTRUCTION,
        JUDGE_PREFIX,
        Criterion,
        Rubric,
        is_judge_metric,
        judge_metric,
    )

__all__ = (
    "DEFAULT_CRITERIA",
    "DEFAULT_INSTRUCTION",
    "JUDGE_PREFIX",
    "Criterion",
    "JudgeItem",
    "Rubric",
    "format_question",
    "is_judge_metric",
    "judge_answered",
    "judge_metric",
    "judge_request",
    "judgement_metrics",
    "parse_judgement",
)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
