"""The Transfer-Prompting graph (LangGraph) and the functions that start, resume and fork runs."""

from .api import comparable_events, create_run, fork_run, preflight, rerun_check
from .build import build_graph
from .config import RunConfig, load_config_file, make_config
from .runner import RunHooks, Runner

__all__ = (
    "RunConfig",
    "RunHooks",
    "Runner",
    "build_graph",
    "comparable_events",
    "rerun_check",
    "create_run",
    "fork_run",
    "load_config_file",
    "make_config",
    "preflight",
)
