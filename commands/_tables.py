"""The metric table, one for ``run``/``show`` (a run's held-out test), ``eval`` and ``compare``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from rich import box
from rich.table import Table
from rich.text import Text

from ..metric_specs import metric_columns
from ._common import fmt_num


@dataclass(frozen=True, slots=True)
class MetricRow:
    """One row: a label (a role, a prompt, a run), its metrics and objective, and undefined counts per metric."""

    label: str
    metrics: Mapping[str, float | None]
    objective: float | None
    undefined: Mapping[str, int] = field(default_factory=dict)


def metric_table(title: str, rows: Sequence[MetricRow], *, first: str = "prompt") -> Table:
    """One row per ``rows`` item, one column per metric any row has (registry order), then the objective."""
    names = metric_columns(r.metrics for r in rows)
    table = Table(title=Text(title), box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column(first, no_wrap=True)
    for m in names:
        table.add_column(m, justify="right", no_wrap=True)
    table.add_column("objective", justify="right", no_wrap=True)
    undefined: dict[str, int] = {}
    for r in rows:
        table.add_row(Text(r.label), *(fmt_num(r.metrics.get(m)) for m in names), fmt_num(r.objective))
        for m, n in r.undefined.items():
            undefined[m] = undefined.get(m, 0) + n
    if undefined:
        table.caption = "undefined (the metric raised or returned a bad value): " + ", ".join(
            f"{m} on {n} example(s)" for m, n in undefined.items())
    return table


__all__ = ("MetricRow", "metric_table")
