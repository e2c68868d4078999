"""Which process holds something (a run's lease, a call being paid for), and whether it still runs."""

from __future__ import annotations

import functools
import os
import socket
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Holder:
    """A process that can hold leases and claims: pid, host and start time (a reused pid is another process)."""

    pid: int
    host: str
    started: str

    @classmethod
    def me(cls) -> Holder:
        return _me(os.getpid())


@functools.cache
def _me(pid: int) -> Holder:  # keyed by pid: a forked child is another holder
    return Holder(pid, socket.gethostname(), process_start(pid) or "")


def process_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot, or None if it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except FileNotFoundError:
        return None
    except OSError:  # no /proc (not Linux): existence is all we can tell
        return _exists(pid)
    # Field 22; the command name (field 2) is in parentheses and may hold spaces.
    return stat.rpartition(")")[2].split()[19]


def _exists(pid: int) -> str | None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # it exists, owned by someone else
    return "?"  # alive, start time unknown


def holder_alive(holder: Holder) -> bool:
    """Whether ``holder`` still runs. A holder on another host is assumed alive."""
    if holder.host != socket.gethostname():
        return True
    started = process_start(holder.pid)
    return started is not None and (started == holder.started or "?" in (started, holder.started))


__all__ = ("Holder", "holder_alive", "process_start")
