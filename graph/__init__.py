"""The Transfer-Prompting graph (LangGraph) and the functions that start, resume and fork runs.

Names load on first use (PEP 562): commands that only read the log never import
LangGraph or a model.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_WHERE = {
    "comparable_events": ".api",
    "create_run": ".api",
    "fork_run": ".api",
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

__all__ = tuple(sorted(_WHERE))
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
