"""Ctrl-C (SIGINT) and SIGTERM counted while work runs: what ``tprompt run`` and the experiment grid share."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any


class Interrupts:
    """SIGINT and SIGTERM counted, not raised, inside the block; the previous handlers come back on exit.

    The one way tprompt counts Ctrl-C: the grid's loop reads :attr:`count` and passes each one on (to a
    child, a pause flag), so a cell started just after a Ctrl-C is not missed; ``tprompt run`` passes
    ``on_signal``, called with the count from the handler. Outside the main thread signals cannot be
    caught and nothing is installed.
    """

    def __init__(self, on_signal: Callable[[int], None] | None = None) -> None:
        self.count = 0
        self._on_signal = on_signal
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self._on_signal is not None:  # e.g. the first pauses the run, the second raises KeyboardInterrupt
            self._on_signal(self.count)

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._old.items():
            signal.signal(signum, handler)
        self._old = {}


#: Set by a driver (``experiment --workers N``) on each child it starts: the driver's pid.
DRIVER_ENV = "TPROMPT_DRIVER_PID"


def watch_parent(parent: int, on_gone: Callable[[], None], *, poll: float = 0.5) -> threading.Thread:
    """Call ``on_gone()`` once this process's parent is no longer ``parent`` (it died, even by kill -9).

    A daemon thread polls :func:`os.getppid` every ``poll`` s: a child of a killed process is adopted
    by another, so its parent id changes. Used by the metric worker (it exits) and by a grid's child
    runs (they pause), which would otherwise go on as orphans with nobody to report to.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll)  # a poll of the parent id, not a wait for an outcome
        on_gone()

    thread = threading.Thread(target=watch, name="tprompt-parent-watch", daemon=True)
    thread.start()
    return thread


def pause_when_driver_gone() -> None:
    """In a child a driver started (:data:`DRIVER_ENV` names our parent): pause (SIGINT to self) once it is gone.

    The SIGINT is the Ctrl-C a driver forwards: the run pauses at its next step boundary and releases
    its lease, so a rerun of the grid continues it. A process not started so does nothing.
    """
    driver = os.environ.get(DRIVER_ENV, "")
    if driver.isdigit() and int(driver) == os.getppid():
        watch_parent(int(driver), lambda: os.kill(os.getpid(), signal.SIGINT))


__all__ = ("DRIVER_ENV", "Interrupts", "pause_when_driver_gone", "watch_parent")
