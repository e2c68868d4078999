"""The Transfer-Prompting graph (LangGraph) and the functions that start, resume and fork runs.

Names load on first use (PEP 562): commands that only read the log never import
LangGraph or a model.
"""

from __future__ import annotations

import importlib
from typing import Any

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
    "RunHooks": ".runner",
    "Runner": ".runner",
}

__all__ = tuple(sorted(_WHERE))


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
