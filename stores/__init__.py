"""The event log (SQLite) and the views folded from it."""

from .db import Store, open_database
from .events import *  # noqa: F403
from .events import __all__ as _event_names
from .log import EventLog, RunRow, Segment, decode_row, new_run_id
from .projection import RunState, ScoredPrompt, TestResult, apply, fold

__all__ = (
    "EventLog",
    "RunRow",
    "RunState",
    "ScoredPrompt",
    "Segment",
    "Store",
    "TestResult",
    "apply",
    "decode_row",
    "fold",
    "new_run_id",
    "open_database",
    *_event_names,
)
