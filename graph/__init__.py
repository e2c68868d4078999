"""The Transfer-Prompting graph (LangGraph) and the functions that start, resume and fork runs.

Names load on first use (PEP 562): commands that only read the log never import
LangGraph or a model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_WHERE = {
    "comparable_events": ".api",
    "create_run": ".api",
    "fork_run": ".api",
    "open_fork": ".api",
    "open_run": ".api",
    "preflight": ".api",
    "rerun_check": ".api",
    "build_graph": ".build",
    "RunConfig": ".config",
    "load_config_file": ".config",
    "make_config": ".config",
    "RunContext": ".context",
    "GraphState": ".nodes",
    "NODES": ".nodes",
    "draw": ".build",
    "EventsAppended": ".runner",
    "Progress": ".runner",
    "Runner": ".runner",
}

if TYPE_CHECKING:  # what a type checker sees; at run time each name loads on first use
    from .api import comparable_events, create_run, fork_run, open_fork, open_run, preflight, rerun_check
    from .build import build_graph, draw
    from .config import RunConfig, load_config_file, make_config
    from .context import RunContext
    from .nodes import NODES, GraphState
    from .runner import EventsAppended, Progress, Runner

__all__ = (
    "EventsAppended",
    "GraphState",
    "NODES",
    "Progress",
    "RunConfig",
    "RunContext",
    "Runner",
    "build_graph",
    "comparable_events",
    "create_run",
    "draw",
    "fork_run",
    "open_fork",
    "open_run",
    "load_config_file",
    "make_config",
    "preflight",
    "rerun_check",
)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
