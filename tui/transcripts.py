"""The transcript viewer's data: a run's LLM calls, their bodies, filters and search.

A thin adapter over the :class:`~tprompt.stores.transcripts.TranscriptStore` of
the app's read-only event log; bodies are loaded once per hash and kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..stores import EventLog
from ..stores.transcripts import TranscriptRow, TranscriptStore


@dataclass(frozen=True, slots=True)
class CallDetail:
    """One call opened: its messages (role, text), the response and the sampling parameters."""

    row: TranscriptRow
    messages: list[tuple[str, str]]
    response: str | None
    params: dict[str, Any]


class Transcripts:
    """Every LLM call of one run's history, with cached bodies.

    Args:
        log: the app's (read-only) event log; its transcripts are read.
        run_id: the run.
    """

    def __init__(self, log: EventLog, run_id: str) -> None:
        self.log = log
        self.run_id = run_id
        self.store: TranscriptStore = log.transcripts
        self.rows: list[TranscriptRow] = []
        self._bodies: dict[str, str | None] = {}
        self._last_rowid = 0
        self._loaded_ancestors = False

    def refresh(self) -> list[TranscriptRow]:
        """Read the calls recorded since the last refresh; returns them (often none).

        Ancestors' calls (a fork's history) are read once, up to the fork
        point; the run's own calls are read incrementally by rowid, so polling
        a long run stays cheap.
        """
        fresh: list[TranscriptRow] = []
        if not self._loaded_ancestors:
            fresh.extend(self.store.ancestor_rows(
                [(seg.run_id, seg.last_seq) for seg in self.log.lineage(self.run_id)[:-1]]))
            self._loaded_ancestors = True
        for rowid, row in self.store.rows_after(self.run_id, self._last_rowid):
            self._last_rowid = rowid
            fresh.append(row)
        self.rows.extend(fresh)
        return fresh

    def body(self, hash_: str | None) -> str | None:
        if hash_ is None:
            return None
        if hash_ not in self._bodies:
            self._bodies[hash_] = self.store.body(hash_)
        return self._bodies[hash_]

    def detail(self, row: TranscriptRow) -> CallDetail:
        """The call's messages, response and parameters (the stored request body, parsed)."""
        raw = self.body(row.request_hash) or "{}"
        try:
            request = json.loads(raw)
        except json.JSONDecodeError:
            request = {"messages": [["?", raw]]}
        messages = [(str(m[0]), str(m[1])) for m in request.get("messages", []) if len(m) == 2]
        params = {k: v for k, v in request.items() if k != "messages"}
        return CallDetail(row=row, messages=messages, response=self.body(row.response_hash), params=params)

    def agents(self) -> list[str]:
        return sorted({r.agent for r in self.rows})

    def steps(self) -> list[str]:
        return sorted({r.step for r in self.rows if r.step}, key=_step_order)

    def filtered(
        self,
        *,
        agent: str | None = None,
        step: str | None = None,
        search: str = "",
        rows: list[TranscriptRow] | None = None,
    ) -> list[TranscriptRow]:
        """The rows (all, or ``rows``) of ``agent`` at ``step`` whose messages or response contain ``search`` (any case)."""
        needle = search.strip().lower()
        out = []
        for row in self.rows if rows is None else rows:
            if agent and row.agent != agent:
                continue
            if step and row.step != step:
                continue
            if needle and not self._contains(row, needle):
                continue
            out.append(row)
        return out

    def _contains(self, row: TranscriptRow, needle: str) -> bool:
        detail = self.detail(row)
        hay = [text for _, text in detail.messages]
        hay.append(detail.response or "")
        return any(needle in text.lower() for text in hay)


def _step_order(step: str) -> tuple[int, int, str]:
    # "source:2" < "source:10" < "target:0" < "test"
    stage, _, number = step.partition(":")
    rank = {"source": 0, "target": 1, "test": 2}.get(stage, 3)
    return (rank, int(number) if number.isdigit() else -1, step)


def system_prompt(detail: CallDetail) -> str:
    """The call's system message (the candidate prompt for scorer calls), or its first message."""
    for role, text in detail.messages:
        if role == "system":
            return text
    return detail.messages[0][1] if detail.messages else ""


__all__ = ("CallDetail", "Transcripts", "system_prompt")
