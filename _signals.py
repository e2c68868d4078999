"""Ctrl-C (SIGINT) and SIGTERM counted while work runs: what ``tprompt run`` and the experiment grid share."""

from __future__ import annotations

import signal
import threading
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


__all__ = ("Interrupts",)
