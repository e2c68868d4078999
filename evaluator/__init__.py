"""The objective prompt evaluator: tasks, answer parsing, the paper's metrics, scoring."""

from .metrics import HIGHER_IS_BETTER, METRIC_NAMES, compute_metrics
from .objective import PARETO_METRICS, ObjectiveWeights, objective, pareto_front
from .parsing import MISSING_CONFIDENCE, ParsedOutput, parse_output, parse_value
from .scoring import LOGPROB_IFR_NOTE, Evaluation, ScoredAnswer, ScoreMode, answer_prompt, check_mode, resolve_mode, score_prompt
from .tasks import AnswerKind, Example, Task, TaskInfo, list_tasks, load_task

__all__ = (
    "AnswerKind",
    "Example",
    "Task",
    "TaskInfo",
    "load_task",
    "list_tasks",
    "METRIC_NAMES",
    "HIGHER_IS_BETTER",
    "compute_metrics",
    "ObjectiveWeights",
    "objective",
    "pareto_front",
    "PARETO_METRICS",
    "ParsedOutput",
    "parse_output",
    "parse_value",
    "MISSING_CONFIDENCE",
    "ScoredAnswer",
    "Evaluation",
    "ScoreMode",
    "score_prompt",
    "answer_prompt",
    "check_mode",
    "resolve_mode",
    "LOGPROB_IFR_NOTE",
)
