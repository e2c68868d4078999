"""Listing runs: every run's summary row, read from the store or folded when it is stale.

Apart from :mod:`.summary` (which the log imports to keep the row in the append's transaction) because listing
reads through the log: summary <- log <- listing, no circle.
"""

from __future__ import annotations

from ..errors import TPromptError
from .log import EventLog, RunRow
from .projection import RunState, fold
from .summary import RunSummary, summarize


def unreadable(row: RunRow, exc: TPromptError) -> RunSummary:
    """The row of a run whose events cannot be read (one damaged run must not hide the others)."""
    return RunSummary(
        run_id=row.run_id, name=row.name, status="unreadable", source_tasks=(), target_task="", proposer="",
        scorer="", best_objective=None, best_stage=None, created_at=row.created_at,
        parent_run_id=row.parent_run_id, parent_seq=row.parent_seq, last_seq=0, error=str(exc),
    )


def run_summaries(log: EventLog, states: dict[str, RunState] | None = None) -> list[RunSummary]:
    """Every run's row, oldest first: the stored row when it is current, else the run folded.

    ``states``, when given, keeps the folded states between calls, so a run
    whose row is stale is folded from where the last call left it.
    """
    out: list[RunSummary] = []
    for row, last_seq, stored in log.summary_rows():
        if stored is not None:
            summary = RunSummary.from_json(stored, row.created_at)
            if summary.last_seq == last_seq:
                out.append(summary)
                continue
        state = (states or {}).get(row.run_id) or RunState(run_id=row.run_id)
        try:
            state = fold(log.events(row.run_id, after=state.last_seq), run_id=row.run_id, state=state)
        except TPromptError as exc:
            out.append(unreadable(row, exc))
            continue
        if states is not None:
            states[row.run_id] = state
        out.append(summarize(state, row.created_at))
    return out


__all__ = ("run_summaries", "unreadable")
