"""CPU thread policy of the transformers backend: how many torch threads a forward pass gets.

All cores other processes leave free for big passes (read from /proc/stat),
one thread for tiny ones, ``TPROMPT_TORCH_THREADS`` to override.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time

#: Below this many tokens a forward pass runs on one thread: splitting tiny
#: matmuls across cores costs more in synchronization than it saves, and on a
#: busy machine threads spin waiting for a core (measured here: 4x slower).
SMALL_FORWARD_TOKENS = 64


_threads_set = False


def cpu_threads() -> int:
    """Threads for big forward passes: ``TPROMPT_TORCH_THREADS``, else every core other processes leave free.

    When another process keeps a core busy, torch's threads wait on each
    other for that core at every operation (measured here: two threads
    sharing a core with a busy process run a matmul at a quarter of one
    thread's speed); fewer threads are then faster. What other processes use
    is read from /proc/stat since the previous call (the CPU time of the whole
    machine minus our own), which follows the machine within a pass; the
    1-minute load average, used where that is not available, lags a minute
    behind and counts our own threads too.
    """
    given = os.environ.get("TPROMPT_TORCH_THREADS", "")
    if given.isdigit() and int(given) > 0:
        return int(given)
    cores = max(1, os.cpu_count() or 1)
    others = _OTHERS.update()
    if others is None:
        try:
            load = os.getloadavg()[0]
        except OSError:  # pragma: no cover - platforms without a load average
            return cores
        return cores if load < cores + 0.5 else max(1, cores // 2)
    # A core counts as taken once more than half of it is busy.
    return max(1, min(cores, cores - math.ceil(others - 0.5)))


class _OtherLoad:
    """Cores used by other processes since the previous reading (None until there is one)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = _cpu_reading()
        self.value: float | None = None

    def update(self) -> float | None:
        with self._lock:
            now = _cpu_reading()
            if now is None or self._last is None:
                return None
            elapsed = now[0] - self._last[0]
            # Under a quarter second /proc/stat's 10 ms ticks are too coarse: keep the last figure.
            if elapsed >= 0.25:
                busy = (now[1] - self._last[1]) / elapsed
                own = (now[2] - self._last[2]) / elapsed
                self.value = max(0.0, busy - own)
                self._last = now
            return self.value


def _cpu_reading() -> tuple[float, float, float] | None:
    """(wall s, CPU s busy on the whole machine, CPU s of this process), or None without /proc/stat."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = stat.readline().split()
        ticks = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 8:
        return None
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[1:8])
    steal = int(fields[8]) if len(fields) > 8 else 0
    return time.monotonic(), (user + nice + system + irq + softirq + steal) / ticks, time.process_time()


_OTHERS = _OtherLoad()


def set_torch_threads() -> None:
    """Use every core once per process (torch's default can be half of them)."""
    global _threads_set
    if _threads_set:
        return
    import torch

    torch.set_num_threads(cpu_threads())
    _threads_set = True


def _threads_for(tokens: int):
    """Torch threads for a forward pass over ``tokens`` tokens (a context manager yielding the count)."""
    return torch_threads(1 if tokens < SMALL_FORWARD_TOKENS else cpu_threads())


@contextlib.contextmanager
def torch_threads(wanted: int):
    """Run the block on ``wanted`` torch threads; yields ``wanted``."""
    import torch

    before = torch.get_num_threads()
    if wanted != before:
        torch.set_num_threads(wanted)
    try:
        yield wanted
    finally:
        if wanted != before:
            torch.set_num_threads(before)
