"""The metrics tprompt knows, in one table: name, label, direction and range.

Every place that lists, orders, labels or ranks metrics reads this table: the
events' metric keys, the evaluator's objective and Pareto front, the result
tables of ``eval``, ``run`` and ``show``, the TUI's columns and the reports.
The evaluator computes the values (:func:`tprompt.evaluator.compute_metrics`,
one entry per row here). Each row is a :class:`MetricSpec`, so a metric
registry (plug-ins with a version and their own compute function) can grow
from it without changing its readers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric.

    Attributes:
        name: its key in events, JSON and config (``"ece"``).
        label: its name for people, in headings and prose (``"ECE"``).
        gloss: a few words on what it measures, where a table has room ("" when the label says it).
        higher_is_better: the direction; the objective and the Pareto front flip the others.
        range: the interval its values lie in.
        pareto: part of the default Pareto front (:data:`tprompt.evaluator.PARETO_METRICS`).
    """

    name: str
    label: str
    gloss: str = ""
    higher_is_better: bool = True
    range: tuple[float, float] = (0.0, 1.0)
    pareto: bool = True

    @property
    def long_label(self) -> str:
        """The label with its gloss, or its direction when lower is better: ``"ECE (lower is better)"``."""
        note = self.gloss or ("" if self.higher_is_better else "lower is better")
        return f"{self.label} ({note})" if note else self.label

    def goodness(self, value: float) -> float:
        """``value`` rescaled so that 0 is the worst end of :attr:`range` and 1 the best."""
        lo, hi = self.range
        share = (value - lo) / (hi - lo)
        return share if self.higher_is_better else 1.0 - share


#: The metrics, in the order tables show them (the paper's accuracy, IFR, ECE, AUROC, AUPRC both ways, plus Brier).
METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("accuracy", "accuracy"),
    MetricSpec("ifr", "IFR", "format followed"),
    MetricSpec("ece", "ECE", higher_is_better=False),
    MetricSpec("auroc", "AUROC"),
    MetricSpec("pr_p", "PR-P", "wrong positive"),
    MetricSpec("pr_n", "PR-N", "correct positive"),
    MetricSpec("brier", "Brier", higher_is_better=False, pareto=False),
)

#: The metrics' names, in table order.
METRIC_NAMES: tuple[str, ...] = tuple(m.name for m in METRICS)
#: name -> whether a larger value is better.
HIGHER_IS_BETTER: dict[str, bool] = {m.name: m.higher_is_better for m in METRICS}

_BY_NAME = {m.name: m for m in METRICS}


#: The prefix of the LLM judge's metrics (``judge_<criterion>``, see :mod:`tprompt.rubric`).
JUDGE_PREFIX = "judge_"


def metric_spec(name: str) -> MetricSpec:
    """The row of metric ``name``; raises KeyError for a name neither in :data:`METRICS` nor registered.

    A judge metric (``judge_<criterion>``) is registered the first time it is asked for.
    """
    if name not in _BY_NAME and is_judge_metric(name):
        register_metric(MetricSpec(name, "judge " + name.removeprefix(JUDGE_PREFIX), pareto=False))
    return _BY_NAME[name]


def is_judge_metric(name: str) -> bool:
    """True for the name of an LLM-judge metric: ``judge_<criterion>``."""
    rest = name.removeprefix(JUDGE_PREFIX)
    return name.startswith(JUDGE_PREFIX) and bool(rest) and rest.replace("_", "").isalnum() and rest.islower()


def register_metric(spec: MetricSpec) -> MetricSpec:
    """Make ``spec`` known to :func:`metric_spec` (the LLM judge's metrics: higher is better, in [0, 1]).

    A stop-gap until the metric registry: tables keep listing :data:`METRICS`
    first and any other names after them (:func:`known_first`).
    """
    return _BY_NAME.setdefault(spec.name, spec)


def known_first(names: Iterable[str]) -> list[str]:
    """``names`` without repeats: the known metrics in table order, then any others sorted."""
    seen = set(names)
    return [m for m in METRIC_NAMES if m in seen] + sorted(seen - set(METRIC_NAMES))


__all__ = (
    "HIGHER_IS_BETTER",
    "JUDGE_PREFIX",
    "METRICS",
    "METRIC_NAMES",
    "MetricSpec",
    "is_judge_metric",
    "known_first",
    "metric_spec",
    "register_metric",
)
