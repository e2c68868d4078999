"""The metric table, one for ``run``/``show`` (a run's held-out test), ``eval`` and ``compare``."""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.table import Table
from rich.text import Text

from ..metric_specs import metric_columns
from ..stores.summary import MetricRow, undefined_note
from ._common import fmt_num


def metric_table(title: str, rows: Sequence[MetricRow], *, first: str = "prompt") -> Table:
    """One row per ``rows`` item, one column per metric any row has (registry order), then the objective."""
    names = metric_columns(r.metrics for r in rows)
    table = Table(title=Text(title), box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column(first, no_wrap=True)
    for m in names:
        table.add_column(m, justify="right", no_wrap=True)
    table.add_column("objective", justify="right", no_wrap=True)
    for r in rows:
        table.add_row(Text(r.label), *(fmt_num(r.metrics.get(m)) for m in names), fmt_num(r.objective))
    table.caption = undefined_note(rows)
    return table


__all__ = ("MetricRow", "metric_table")
