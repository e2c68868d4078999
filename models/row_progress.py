"""Rows answered inside one model call, for progress bars: a hook the caller sets, the backend calls.

A local model answers a scorer's batch (32 questions) in one call; without this,
progress would read 0/N until the whole batch is done and then jump. The scorer
sets a callback around its call (:func:`rows_progress`); the local engine calls
:func:`rows_done` as rows finish, and the recorder does for a backend answering
one request at a time. The callback is held in a context variable: it reaches
the backend called in this thread and nothing else, and costs nothing unset.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar

_HOOK: ContextVar[Callable[[int], None] | None] = ContextVar("tprompt_rows_progress", default=None)


@contextlib.contextmanager
def rows_progress(callback: Callable[[int], None]) -> Iterator[None]:
    """Call ``callback(n)`` whenever ``n`` more rows of the model calls made inside are answered."""
    token = _HOOK.set(callback)
    try:
        yield
    finally:
        _HOOK.reset(token)


def rows_done(n: int = 1) -> None:
    """``n`` more rows of the call in flight are answered (nothing happens when nobody listens)."""
    callback = _HOOK.get()
    if callback is not None and n > 0:
        callback(n)


__all__ = ("rows_done", "rows_progress")
