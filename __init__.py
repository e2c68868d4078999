"""tprompt: event-sourced Transfer-Prompting (arXiv 2502.14211).

Every optimization step is an immutable event in SQLite; runs can be paused,
replayed, forked from any source prompt and resumed on the target task.

The Python API (names load on first use, so ``import tprompt`` is cheap)::

    from tprompt import optimize, task_from_records       # one call
    from tprompt import build_graph, Runner, create_run    # the graph and its driver
    from tprompt import EventLog, RunConfig, RunContext    # the log, the knobs, what nodes see

See docs/python.md and examples/critic_node.py.
"""

from typing import TYPE_CHECKING

from tprompt._lazy import (
    lazy_exports,  # absolute: pytest may import this file under another name
)

__version__ = "0.1.0"

_WHERE = {
    "optimize": ".graph.optimize",
    "task_from_records": ".graph.optimize",
    "build_graph": ".graph.build",
    "draw": ".graph.build",
    "NODES": ".graph.nodes",
    "GraphState": ".graph.nodes",
    "emit": ".graph.nodes",
    "evaluate_answers": ".graph.nodes",
    "RunContext": ".graph.context",
    "Runner": ".graph.runner",
    "EventsAppended": ".graph.runner",
    "Progress": ".graph.runner",
    "create_run": ".graph.api",
    "fork_run": ".graph.api",
    "RunConfig": ".config",
    "make_config": ".config",
    "rescore_run": ".graph.rescore",
    "export_prompt": ".export",
    "read_prompt_file": ".prompt_file",
    "PromptExport": ".export",
    "EventLog": ".stores",
    "RunState": ".stores",
    "Task": ".evaluator",
    "Example": ".evaluator",
    "ObjectiveWeights": ".evaluator",
    "metric": ".evaluator.registry",
    "register_metric": ".evaluator.registry",
}

if TYPE_CHECKING:  # what a type checker sees; at run time each name loads on first use
    from .config import RunConfig, make_config
    from .evaluator import Example, ObjectiveWeights, Task
    from .evaluator.registry import metric, register_metric
    from .export import PromptExport, export_prompt
    from .graph.api import create_run, fork_run
    from .graph.build import build_graph, draw
    from .graph.context import RunContext
    from .graph.nodes import NODES, GraphState, emit, evaluate_answers
    from .graph.optimize import optimize, task_from_records
    from .graph.rescore import rescore_run
    from .graph.runner import EventsAppended, Progress, Runner
    from .prompt_file import read_prompt_file
    from .stores import EventLog, RunState

__all__ = (
    "__version__",
    "EventLog",
    "EventsAppended",
    "Example",
    "GraphState",
    "NODES",
    "ObjectiveWeights",
    "Progress",
    "PromptExport",
    "RunConfig",
    "RunContext",
    "RunState",
    "Runner",
    "Task",
    "build_graph",
    "create_run",
    "draw",
    "emit",
    "evaluate_answers",
    "export_prompt",
    "fork_run",
    "make_config",
    "metric",
    "optimize",
    "read_prompt_file",
    "register_metric",
    "rescore_run",
    "task_from_records",
)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
