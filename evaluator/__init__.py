"""The objective prompt evaluator: tasks, answer parsing, the paper's metrics, scoring.

Names load on first use (PEP 562): a module that needs only a submodule (``config`` needs the
template) does not import the metrics' numpy and the scorer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

# Loaded now (it imports only pydantic): the function ``objective`` must win over its module's name, which
# the import system sets on this package whenever ``evaluator.objective`` is first imported.
from .objective import PARETO_METRICS, ObjectiveWeights, objective, pareto_front

_WHERE = {
    "HIGHER_IS_BETTER": ".metrics",
    "METRIC_NAMES": ".metrics",
    "compute_metrics": ".metrics",
    "MISSING_CONFIDENCE": ".parsing",
    "ParsedOutput": ".parsing",
    "parse_output": ".parsing",
    "parse_value": ".parsing",
    "LOGPROB_IFR_NOTE": ".scoring",
    "Evaluation": ".scoring",
    "ScoredAnswer": ".scoring",
    "ScoreMode": ".scoring",
    "answer_prompt": ".scoring",
    "check_mode": ".scoring",
    "resolve_mode": ".scoring",
    "score_prompt": ".scoring",
    "AnswerKind": ".tasks",
    "Example": ".tasks",
    "Task": ".tasks",
    "TaskInfo": ".tasks",
    "list_tasks": ".tasks",
    "load_task": ".tasks",
}

if TYPE_CHECKING:  # what a type checker sees; at run time each name loads on first use
    from .metrics import HIGHER_IS_BETTER, METRIC_NAMES, compute_metrics
    from .parsing import MISSING_CONFIDENCE, ParsedOutput, parse_output, parse_value
    from .scoring import LOGPROB_IFR_NOTE, Evaluation, ScoredAnswer, ScoreMode, answer_prompt, check_mode, resolve_mode, score_prompt
    from .tasks import AnswerKind, Example, Task, TaskInfo, list_tasks, load_task

__getattr__, __dir__ = lazy_exports(__name__, _WHERE)

__all__ = (
    "HIGHER_IS_BETTER",
    "METRIC_NAMES",
    "compute_metrics",
    "PARETO_METRICS",
    "ObjectiveWeights",
    "objective",
    "pareto_front",
    "MISSING_CONFIDENCE",
    "ParsedOutput",
    "parse_output",
    "parse_value",
    "LOGPROB_IFR_NOTE",
    "Evaluation",
    "ScoredAnswer",
    "ScoreMode",
    "answer_prompt",
    "check_mode",
    "resolve_mode",
    "score_prompt",
    "AnswerKind",
    "Example",
    "Task",
    "TaskInfo",
    "list_tasks",
    "load_task",
)
