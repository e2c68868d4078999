"""A run in one row: what ``tprompt runs`` and the runs browser show, kept by the store.

:func:`summarize` is the one rule that turns a run's state into its row. The
event log stores that row in the same transaction as the events it appends
(``EventLog.append`` folds them onto the run's state before them), so listing runs reads one row
per run whatever their length. A row older than the run's last event (a fork,
``tprompt pause`` from another process, a database written before summaries
existed) is not trusted: that run is folded instead (:mod:`.listing`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

from .events import ROLES
from .projection import RunState, ScoredPrompt, prompt_objectives

#: how a tested prompt's role is named in a table: ``original``, ``best source``, ``best target``
ROLE_LABELS: dict[str, str] = {role: role.replace("_", " ") for role in ROLES}


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One run in one row."""

    run_id: str
    name: str | None
    status: str
    source_tasks: tuple[str, ...]
    target_task: str
    proposer: str
    scorer: str
    best_objective: float | None
    best_stage: str | None
    created_at: str
    parent_run_id: str | None
    parent_seq: int | None
    last_seq: int
    #: why the run's events could not be read (a damaged row), if so
    error: str | None = None
    #: the held-out test objective of the run's best target prompt (None: not tested yet)
    test_objective: float | None = None
    #: the held-out test objective of the run's original prompt (None: not tested yet)
    original_test_objective: float | None = None

    @property
    def models(self) -> str:
        return self.proposer if self.proposer == self.scorer else f"{self.proposer} / {self.scorer}"

    def matches(self, needle: str) -> bool:
        """Case-insensitive filter over every shown column."""
        if not needle:
            return True
        hay = " ".join(
            [
                self.run_id,
                self.name or "",
                self.status,
                *self.source_tasks,
                self.target_task,
                self.models,
                self.parent_run_id or "",
                self.created_at,
            ]
        ).lower()
        return all(word in hay for word in needle.lower().split())

    def to_json(self) -> str:
        """The stored form (without ``created_at``, which the ``runs`` row holds)."""
        data = asdict(self)
        del data["created_at"]
        return json.dumps(data, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str, created_at: str) -> RunSummary:
        data = json.loads(text)
        data["source_tasks"] = tuple(data["source_tasks"])
        if any(name not in data for name in _FIELDS):
            data["last_seq"] = -1  # written before a field existed: stale, so the run is folded (see listing)
        return cls(**data, created_at=created_at)


_FIELDS = tuple(f for f in RunSummary.__dataclass_fields__ if f != "created_at")


def test_objective(state: RunState, role: str = "best_target") -> float | None:
    """The held-out test objective of ``role``'s prompt in ``state`` (None: that prompt is not tested yet)."""
    tested = state.tested.get(role)
    return tested.objective if tested is not None else None


@dataclass(frozen=True, slots=True)
class MetricRow:
    """One row of a metric table: a label (a role, a prompt, a run), its metrics and objective, undefined counts per metric."""

    label: str
    metrics: Mapping[str, float | None]
    objective: float | None
    undefined: Mapping[str, int] = field(default_factory=dict)


def test_rows(state: RunState) -> list[MetricRow]:
    """The held-out test table of a run (``tprompt show``, the TUI's Scores tab): one row per tested role, in
    :data:`ROLE_LABELS` order (original, best source, best target); empty while nothing is tested."""
    return [MetricRow(label, r.metrics, r.objective, r.undefined)
            for role, label in ROLE_LABELS.items() if (r := state.tested.get(role)) is not None]


def test_title(state: RunState) -> str:
    """The test table's title: the target task and the test split's size (call when :func:`test_rows` is not empty)."""
    first = next(iter(state.tested.values()))
    return f"{state.target_task}: held-out test split ({first.n_examples} examples)"


def undefined_note(rows: Sequence[MetricRow]) -> str | None:
    """The caption of a metric table whose rows hold undefined values, summed per metric; None when none."""
    undefined: dict[str, int] = {}
    for r in rows:
        for m, n in r.undefined.items():
            undefined[m] = undefined.get(m, 0) + n
    if not undefined:
        return None
    return "undefined (the metric raised or returned a bad value): " + ", ".join(
        f"{m} on {n} example(s)" for m, n in undefined.items())


def best_scored(state: RunState, stage: str) -> tuple[ScoredPrompt, float] | None:
    """``state.best(stage)`` as (score row, objective), without building the whole sorted history.

    The rule is :func:`~tprompt.stores.projection.prompt_objectives` (ties go
    to the earlier seq). The replay pane calls this on every cursor move, so it
    must stay cheap.
    """
    ranked = prompt_objectives(s for s in state.scores if s.stage == stage)
    if not ranked:
        return None
    mean, row = max(ranked.values(), key=lambda v: (v[0], -v[1].seq))
    return row, mean


def best_of(state: RunState) -> tuple[float | None, str | None]:
    """The best objective of a run so far and its stage (target preferred, as it is the goal)."""
    for stage in ("target", "source"):
        found = best_scored(state, stage)
        if found is not None:
            return found[1], stage
    return None, None


def summarize(state: RunState, created_at: str) -> RunSummary:
    """A run's row from its folded state."""
    cfg = state.config
    objective, stage = best_of(state)
    return RunSummary(
        run_id=state.run_id,
        name=(cfg.name if cfg else None) or state.name,
        status=state.status,
        source_tasks=tuple(state.source_tasks),
        target_task=state.target_task or (cfg.target_task if cfg else ""),
        proposer=cfg.proposer if cfg else "",
        scorer=cfg.scorer if cfg else "",
        best_objective=objective,
        best_stage=stage,
        created_at=created_at,
        parent_run_id=state.parent_run_id,
        parent_seq=state.parent_seq,
        last_seq=state.last_seq,
        test_objective=test_objective(state),
        original_test_objective=test_objective(state, "original"),
    )


__all__ = ("ROLE_LABELS", "MetricRow", "RunSummary", "best_of", "best_scored", "summarize", "test_objective", "test_rows",
           "test_title", "undefined_note")
