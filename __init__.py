"""tprompt: event-sourced Transfer-Prompting (arXiv 2502.14211).

Every optimization step is an immutable event in SQLite; runs can be paused,
replayed, forked from any source prompt and resumed on the target task.
"""

__version__ = "0.1.0"

__all__ = ("__version__",)
