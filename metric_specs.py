"""The metrics tprompt knows, in one registry: name, label, direction, range and version.

Every place that lists, orders, labels or ranks metrics reads this table: the
events' metric keys, the evaluator's objective and Pareto front, the result
tables of ``eval``, ``run`` and ``show``, the TUI's columns and the reports.
The evaluator computes the values (:func:`tprompt.evaluator.compute_metrics`,
one entry per row of :data:`METRICS`). The table starts with the paper's seven
(:data:`METRICS`); the evaluator's metric plug-ins (:mod:`tprompt.evaluator.registry`:
the open-ended ones, a user's own, the judge's ``judge_<criterion>``) add their
rows at run time with :func:`register_spec`, and every reader looks names up
here with :func:`metric_spec`. The functions that compute them live in the
evaluator; this module is below the stores and holds data only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .judge.rubric import JUDGE_PREFIX, is_judge_metric


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
        version: the version of the function computing it; a run records it and refuses to resume under another.
    """

    name: str
    label: str
    gloss: str = ""
    higher_is_better: bool = True
    range: tuple[float, float] = (0.0, 1.0)
    pareto: bool = True
    version: str = "1"

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

#: The open-ended metrics built in (their functions: :mod:`tprompt.evaluator.open_metrics`, paired with these specs
#: by :mod:`tprompt.evaluator.registry`); a run computes them when it names them (``--metric rouge_l``).
OPEN_METRICS: tuple[MetricSpec, ...] = tuple(
    MetricSpec(name, label, gloss, pareto=False) for name, label, gloss in (
        ("exact_match", "EM", "exact match"), ("token_f1", "F1", "token F1"), ("contains", "contains", ""),
        ("regex_match", "regex", "pattern found"), ("json_valid", "JSON", "valid JSON"),
        ("json_schema_valid", "schema", "valid per schema"), ("rouge_l", "ROUGE-L", ""),
    )
)

#: What an open-ended task is scored with when its run names no metric.
DEFAULT_OPEN_METRICS: tuple[str, ...] = ("rouge_l", "token_f1")

#: The metrics' names, in table order.
METRIC_NAMES: tuple[str, ...] = tuple(m.name for m in METRICS)
#: name -> whether a larger value is better.
HIGHER_IS_BETTER: dict[str, bool] = {m.name: m.higher_is_better for m in METRICS}

#: Every registered metric by name, in registration order: the seven, the open-ended ones, then a user's.
_BY_NAME: dict[str, MetricSpec] = {m.name: m for m in (*METRICS, *OPEN_METRICS)}
#: The names a user's metric may not take: the built-in metrics' (the judge's ``judge_*`` are refused too).
BUILTIN_NAMES: frozenset[str] = frozenset(_BY_NAME)


def register_spec(spec: MetricSpec) -> MetricSpec:
    """Add ``spec`` to the registry (again registering an equal spec is a no-op); returns it.

    A user's metric registered again under its name with another spec replaces it: a long-lived process
    may run one module's ``iso_date`` and then another's. Two of them in one run are refused where the
    run's metrics are resolved (:func:`tprompt.evaluator.registry.resolve_metrics`).

    Raises:
        ValueError: a built-in metric holds that name with another spec, or the spec is malformed
        (a name that is not an identifier-like word, or an empty range).
    """
    name = spec.name
    if not name or not all(c.isalnum() or c in "_.-" for c in name):
        raise ValueError(f"metric name {name!r} must be letters, digits, '_', '.' or '-'")
    lo, hi = spec.range
    if not lo < hi or lo != lo or hi != hi:
        raise ValueError(f"metric {name!r}: its range {spec.range} must be (low, high) with low < high")
    old = _BY_NAME.get(name)
    if old is not None and old != spec and name in BUILTIN_NAMES:
        raise ValueError(f"a different metric {name!r} is already registered ({old.label}, version {old.version})")
    _BY_NAME[name] = spec
    return spec


def is_registered(name: str) -> bool:
    """Whether metric ``name`` has a spec: a registered one, or an LLM judge's (``judge_<criterion>``).

    A lookup only: nothing is registered by asking (a judge metric's spec is made from its name).
    """
    return name in _BY_NAME or is_judge_metric(name)


def registered_names() -> tuple[str, ...]:
    """The registered metrics' names: the seven in table order, then the others in registration order."""
    return tuple(_BY_NAME)


def metric_spec(name: str) -> MetricSpec:
    """The row of metric ``name`` (a judge metric's is made from its name); KeyError for a name with none."""
    found = _BY_NAME.get(name)
    if found is not None:
        return found
    if is_judge_metric(name):
        return MetricSpec(name, "judge " + name.removeprefix(JUDGE_PREFIX), pareto=False)
    raise KeyError(name)


def known_first(names: Iterable[str]) -> list[str]:
    """``names`` without repeats: the registered metrics in registry order, then any others sorted."""
    seen = set(names)
    return [m for m in _BY_NAME if m in seen] + sorted(seen - set(_BY_NAME))


def heading(name: str) -> str:
    """A metric's column heading: the paper's seven by their keys (``ifr``, ``pr_p``: the headings the
    classic tables have always had), any other metric by its label (``ROUGE-L``, ``judge relevance``),
    a name not registered in this process (a user's metric not imported) as itself."""
    if name in METRIC_NAMES or not is_registered(name):
        return name
    return metric_spec(name).label


def lower_is_better(names: Iterable[str]) -> list[str]:
    """The labels of those of ``names`` where a smaller value is better (an unregistered name counts as higher)."""
    return [metric_spec(n).label for n in names if is_registered(n) and not metric_spec(n).higher_is_better]


def metric_columns(rows: Iterable[Mapping[str, object]]) -> list[str]:
    """The metric columns of a table of metric dicts: every name any row has, in registry order."""
    names: set[str] = set()
    for row in rows:
        names.update(row)
    return known_first(names) or list(METRIC_NAMES)


__all__ = ("BUILTIN_NAMES", "DEFAULT_OPEN_METRICS", "HIGHER_IS_BETTER", "JUDGE_PREFIX", "METRICS", "METRIC_NAMES", "OPEN_METRICS", "MetricSpec", "heading", "is_judge_metric",
           "is_registered", "known_first", "lower_is_better", "metric_columns", "metric_spec", "register_spec",
           "registered_names")
