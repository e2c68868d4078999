"""Several endpoints of one served model: which one takes the next request.

An :class:`~.api.ApiBackend` given several base URLs (vLLM data-parallel
replicas, several servers of the same model) keeps one client per URL. Which
endpoint answers is not part of the cache key, so every endpoint must serve the
same model at the same revision.

- :class:`Health` is shared by every run's view of the backend (it is about the
  servers): an endpoint that failed with a retryable error (a lost connection, a
  5xx, a 429, a timeout) is *down* for a bounded cool-down, then tried again; an
  answer from it marks it up at once.
- :class:`Slots` is each view's own: at most ``cap`` requests in flight per
  endpoint. A request goes to the endpoint that is up and has the fewest in
  flight, ties taken in turn (round-robin); it waits for a free slot on an
  endpoint that is up rather than go to one that is down. When every endpoint
  is down (or was already tried by this request) it takes any free slot, so the
  backend's usual retries and errors apply as with one endpoint.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager

#: Seconds an endpoint that failed is left out of the rotation (longer when the server asked, at most MAX_COOL_DOWN_S).
COOL_DOWN_S = 5.0
#: Longest cool-down, whatever a server's Retry-After says.
MAX_COOL_DOWN_S = 60.0
#: Longest single wait for a free slot before health is looked at again (an endpoint's cool-down may have ended).
_RECHECK_S = 0.5


class Health:
    """Which endpoints are down, until when; shared by every view of one backend."""

    def __init__(self, count: int) -> None:
        self._lock = threading.Lock()
        self._down_until = [0.0] * count

    def mark_down(self, index: int, retry_after: float | None = None) -> None:
        """Leave endpoint ``index`` out for the cool-down (or what the server asked, up to the maximum)."""
        wait = min(MAX_COOL_DOWN_S, max(COOL_DOWN_S, retry_after or 0.0))
        with self._lock:
            self._down_until[index] = max(self._down_until[index], time.monotonic() + wait)

    def mark_up(self, index: int) -> None:
        with self._lock:
            self._down_until[index] = 0.0

    def up(self) -> list[bool]:
        """Per endpoint: whether it is in the rotation now."""
        now = time.monotonic()
        with self._lock:
            return [until <= now for until in self._down_until]


class Slots:
    """One view's requests in flight per endpoint, at most ``cap`` on each.

    Args:
        count: endpoints.
        cap: requests in flight at once on each.
        health: the backend's shared :class:`Health`.
    """

    def __init__(self, count: int, cap: int, health: Health) -> None:
        self.cap = max(1, cap)
        self.health = health
        self._in_flight = [0] * count
        self._turn = 0
        self._cond = threading.Condition()

    @property
    def total(self) -> int:
        """Requests in flight at once over every endpoint."""
        return self.cap * len(self._in_flight)

    def in_flight(self) -> list[int]:
        with self._cond:
            return list(self._in_flight)

    @contextmanager
    def slot(self, avoid: Collection[int] = ()) -> Iterator[int]:
        """Hold a slot on the endpoint that should take the next request; yields its index.

        ``avoid``: endpoints this request already failed on; taken only when no other is up.
        """
        with self._cond:
            while (index := self._pick(avoid)) is None:
                self._cond.wait(_RECHECK_S)
            self._in_flight[index] += 1
        try:
            yield index
        finally:
            with self._cond:
                self._in_flight[index] -= 1
                self._cond.notify_all()

    def _pick(self, avoid: Collection[int]) -> int | None:
        # Called holding the condition: the endpoint for the next request, or None to wait for a slot.
        count = len(self._in_flight)
        up = self.health.up()
        wanted = [i for i in range(count) if up[i] and i not in avoid]
        if not wanted:  # all down or tried: any endpoint, as the one endpoint of a single-URL backend
            wanted = [i for i in range(count) if i not in avoid] or list(range(count))
        free = [i for i in wanted if self._in_flight[i] < self.cap]
        if not free:
            return None
        # Fewest in flight first; among equals, the first at or after the turn (round-robin).
        best = min(free, key=lambda i: (self._in_flight[i], (i - self._turn) % count))
        self._turn = (best + 1) % count
        return best


__all__ = ("COOL_DOWN_S", "MAX_COOL_DOWN_S", "Health", "Slots")
