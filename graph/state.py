"""The graph's state and how a node appends to the run: what every node module shares.

Kept apart from :mod:`.nodes` so the modules holding nodes' steps (``program_steps``) import it, not
the node table (which imports them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypedDict

from langgraph.runtime import Runtime

from ..stores.events import Event, StoredEvent
from ..stores.projection import RunState
from .context import RunContext


class GraphState(TypedDict):
    """The graph's state: the run's projection and the events the last node appended."""

    run: RunState
    events: list[StoredEvent]


Update = dict[str, Any]
Node = Callable[[GraphState, Runtime[RunContext]], Update]


def emit(state: GraphState, runtime: Runtime[RunContext], *events: Event) -> Update:
    """Append ``events`` after the run's last event; the state update saying so."""
    stored, run = runtime.context.emit(state["run"], *events)
    return {"run": run, "events": stored}


__all__ = ("GraphState", "Node", "Update", "emit")
