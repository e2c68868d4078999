"""The one retry policy of model calls: a retryable error is tried again, with backoff, a few times.

The recorder sends every chat and options call through it; a served model's
capability probe (:meth:`.api.ApiBackend.supports_option_probs`) too, so a
probe that times out once is retried like any other call, not the end of the
command.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from ..errors import BackendError

#: Attempts after the first for a retryable error (a 429, a 5xx, a lost connection, a timeout).
RETRIES = 4
#: The first retry's wait in seconds; it doubles each time (at least what the server asked, if it did).
BACKOFF_S = 0.5

T = TypeVar("T")


def with_retries(
    call: Callable[[], T],
    *,
    retries: int = RETRIES,
    backoff_s: float = BACKOFF_S,
    abandoned: Callable[[], bool] | None = None,
) -> T:
    """``call()``, tried again on a retryable :class:`BackendError` up to ``retries`` times.

    Each wait is ``backoff_s * 2**attempt``, or the error's ``retry_after`` if longer
    (a 429/503's ``Retry-After``). Once ``abandoned()`` is True (the run is pausing)
    the error is raised instead of retried.

    Raises:
        BackendError: not retryable, or still failing after the retries.
    """
    attempt = 0
    while True:
        try:
            return call()
        except BackendError as exc:
            if not exc.is_retryable or attempt >= retries or (abandoned is not None and abandoned()):
                raise
            time.sleep(max(backoff_s * (2**attempt), getattr(exc, "retry_after", None) or 0.0))
            attempt += 1
