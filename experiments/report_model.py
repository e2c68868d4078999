"""What a report holds before it is rendered: groups (one table each) of arms' test-split samples, and stats.

Read by :mod:`.report` (tables, Markdown, JSON) and :mod:`.plots` (PNG files); it imports neither.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..metric_specs import METRIC_NAMES, metric_columns

#: A classic run's table columns: the paper's seven metrics, then the objective (a report's own: :func:`columns_of`).
COLUMNS: tuple[str, ...] = (*METRIC_NAMES, "objective")


@dataclass(frozen=True, slots=True)
class ArmSample:
    """One arm's test-split result under one seed."""

    arm: str
    seed: int
    run_id: str
    values: dict[str, float | None]
    n_test: int
    text: str = ""


@dataclass(frozen=True, slots=True)
class Stat:
    """Mean and sample standard deviation of the defined values (sd None for fewer than two)."""

    mean: float | None
    sd: float | None
    n: int

    @classmethod
    def of(cls, values: Sequence[float | None]) -> Stat:
        xs = [float(v) for v in values if v is not None and not math.isnan(v)]
        if not xs:
            return cls(None, None, 0)
        return cls(statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else None, len(xs))


@dataclass(frozen=True, slots=True)
class RunRef:
    """A run that belongs to a group, for plots and the run list."""

    arm: str
    seed: int
    run_id: str
    status: str
    train_calls: int


@dataclass
class Group:
    """One table: a model and a dataset (source set -> target), under one budget."""

    title: str
    model: str
    sources: tuple[str, ...]
    target: str
    budget: int | None
    arms: list[str]
    samples: list[ArmSample] = field(default_factory=list)
    runs: list[RunRef] = field(default_factory=list)

    @property
    def seeds(self) -> list[int]:
        return sorted({s.seed for s in self.samples})

    def arm_samples(self, arm: str) -> list[ArmSample]:
        return [s for s in self.samples if s.arm == arm]

    @property
    def columns(self) -> tuple[str, ...]:
        """This group's columns: its runs' own metrics in registry order, then the objective."""
        return columns_of([self])

    def summary(self, arm: str) -> dict[str, Stat]:
        """Mean and spread over seeds of each column for ``arm``."""
        rows = self.arm_samples(arm)
        return {c: Stat.of([r.values.get(c) for r in rows]) for c in self.columns}

    def change(self, arm: str, base: str = "original") -> dict[str, Stat]:
        """Mean and spread over seeds of the paired per-seed difference ``arm - base``."""
        base_by_seed = {s.seed: s for s in self.arm_samples(base)}
        out: dict[str, Stat] = {}
        for c in self.columns:
            diffs: list[float | None] = []
            for s in self.arm_samples(arm):
                b = base_by_seed.get(s.seed)
                if b is None or s.values.get(c) is None or b.values.get(c) is None:
                    continue
                diffs.append(float(s.values[c]) - float(b.values[c]))  # type: ignore[arg-type]
            out[c] = Stat.of(diffs)
        return out

    def n_test(self) -> int:
        return max((s.n_test for s in self.samples), default=0)


@dataclass
class Report:
    """What a report holds before it is rendered."""

    kind: str  # "experiment" or "run"
    name: str
    slug: str
    groups: list[Group]
    description: str | None = None
    ref_id: str | None = None
    complete: bool = True
    notes: list[str] = field(default_factory=list)
    #: paid model calls of the report's runs: ``TranscriptStore.spend`` rows
    spend: list[tuple[str, str, int, int, int, float | None]] = field(default_factory=list)


def columns_of(groups: Sequence[Group]) -> tuple[str, ...]:
    """The table columns of ``groups``: the union of their test rows' metrics in registry order, then the objective.

    A classic run's are :data:`COLUMNS` (the seven); with no row yet, the seven too.
    """
    metrics = metric_columns({k: v for k, v in s.values.items() if k != "objective"} for g in groups for s in g.samples)
    return (*metrics, "objective")


__all__ = ("COLUMNS", "ArmSample", "Group", "Report", "RunRef", "Stat", "columns_of")
