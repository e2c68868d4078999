"""One objective from many metrics, and the Pareto front of a set of candidates.

The objective is a weighted mean of "goodness" terms in [0, 1], one per metric
of the table (:data:`tprompt.metric_specs.METRICS`: a lower-is-better metric
counts as 1 - value). The default weights are :class:`ObjectiveWeights`' fields
(docs/tasks.md says them; a test holds it to them). Change them with
``ObjectiveWeights(...)`` (or the run config). A built-in open-ended metric or a judge's can be weighted
by name too: ``ObjectiveWeights(rouge_l=1)``. A run's weights are checked
against the metrics that run computes, and nothing else
(:func:`tprompt.evaluator.registry.run_objective_weights`, validation context
``{"metrics": names}``): what this process happens to have imported plays no part.

An undefined metric (None, e.g. AUROC when every answer is correct) is left
out and the remaining weights are renormalized, so the objective stays in
[0, 1] and is never NaN. If every weighted metric is undefined the objective
is 0.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

from ..metric_specs import BUILTIN_NAMES, METRIC_NAMES, METRICS, is_judge_metric, is_registered, metric_spec

T = TypeVar("T")


class ObjectiveWeights(BaseModel):
    """Weights of the metrics in the objective (non-negative, not all zero).

    The seven fields are the paper's metrics with their default weights; any
    other registered metric name is accepted as an extra key (default weight 0).
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    accuracy: float = Field(0.5, ge=0, description="weight of accuracy")
    ifr: float = Field(0.2, ge=0, description="weight of the instruction-following rate")
    ece: float = Field(0.1, ge=0, description="weight of 1 - expected calibration error")
    auroc: float = Field(0.1, ge=0, description="weight of AUROC (confidence separates right from wrong)")
    pr_n: float = Field(0.05, ge=0, description="weight of AUPRC with correct answers positive")
    pr_p: float = Field(0.05, ge=0, description="weight of AUPRC with wrong answers positive")
    brier: float = Field(0.0, ge=0, description="weight of 1 - Brier score")

    @model_validator(mode="after")
    def _not_all_zero(self, info: ValidationInfo) -> ObjectiveWeights:
        run_metrics: tuple[str, ...] | None = (info.context or {}).get("metrics") if info is not None else None
        if run_metrics is not None:  # a run's weights: the seven and the metrics that run computes
            known = [*METRIC_NAMES, *(n for n in run_metrics if n not in METRIC_NAMES)]
        else:  # weights on their own: the built-in metrics, and any judge criterion's
            known = sorted(BUILTIN_NAMES, key=lambda n: (n not in METRIC_NAMES, n))
        for name, value in (self.model_extra or {}).items():
            if name not in known and (run_metrics is not None or not is_judge_metric(name)):
                close = difflib.get_close_matches(name, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"weight of unknown metric {name!r}{hint}; known: {', '.join(known)}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"weight of {name} must be a number >= 0, got {value!r}")
        if sum(self.model_dump().values()) <= 0:
            raise ValueError("at least one objective weight must be positive")
        return self


def _goodness(name: str, value: float) -> float:
    return metric_spec(name).goodness(value)


def objective(metrics: dict[str, float | None], weights: ObjectiveWeights | None = None) -> float:
    """The weighted mean of the defined metrics' goodness (see the module doc)."""
    w = (weights or ObjectiveWeights()).model_dump()
    total = 0.0
    weight_sum = 0.0
    for name, weight in w.items():
        value = metrics.get(name)
        if weight <= 0 or value is None or value != value:  # None or NaN: undefined
            continue
        total += weight * _goodness(name, float(value))
        weight_sum += weight
    return total / weight_sum if weight_sum > 0 else 0.0


#: Metrics the Pareto front is taken over by default.
PARETO_METRICS: tuple[str, ...] = tuple(m.name for m in METRICS if m.pareto)


def _dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


def pareto_front(items: Sequence[T], key: Callable[[T], dict[str, float | None]],
                 metrics: Iterable[str] = PARETO_METRICS) -> list[T]:
    """The items no other item dominates over ``metrics`` (in input order).

    Lower-is-better metrics (ECE, Brier) are flipped; an undefined metric
    counts as worse than any defined value. Items with equal metrics are all kept.
    """
    names = [m for m in metrics if is_registered(m)]
    vectors = []
    for item in items:
        values = key(item)
        vec = []
        for name in names:
            v = values.get(name)
            vec.append(float("-inf") if v is None or v != v else _goodness(name, float(v)))
        vectors.append(vec)
    return [item for i, item in enumerate(items)
            if not any(_dominates(vectors[j], vectors[i]) for j in range(len(items)) if j != i)]
