"""What the benchmarks share: the machine line they print, and timing whole ``tprompt`` processes."""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping

from tprompt._cpu import flags


def cpu_model() -> str:
    """The CPU's model name as ``/proc/cpuinfo`` gives it ("unknown CPU" where it cannot be read)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            return next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "unknown CPU")
    except OSError:
        return "unknown CPU"


def cpu_flags(wanted: Iterable[str] = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")) -> str:
    """The CPU's model name and which of the ``wanted`` flags it has: ``"Intel ..., flags: avx2 avx512f"``."""
    wanted = tuple(wanted)
    present = " ".join(f for f in wanted if f in flags()) or "none of " + ",".join(wanted)
    return f"{cpu_model()}, flags: {present}"


def timed_cli(args: list[str], env: Mapping[str, str], cwd: str) -> float:
    """Seconds one ``python -m tprompt.cli ARGS`` process takes, start to exit (output discarded)."""
    return timed_cli_cpu(args, env, cwd)[0]


def timed_cli_cpu(args: list[str], env: Mapping[str, str], cwd: str) -> tuple[float, float]:
    """Wall seconds of one ``python -m tprompt.cli ARGS`` process, and its CPU seconds (user + system).

    The CPU time is what the process cost whatever else the machine runs: on a loaded machine its
    wall time grows with the load, its CPU time far less.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tprompt.cli", *args], env=dict(env), cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def medians(label: str, times: Mapping[str, list[float]], digits: int) -> str:
    """``label`` with the median of ``times["now"]`` and, with a baseline, its median and the ratio of the two."""
    med = {k: statistics.median(v) for k, v in times.items()}
    line = f"{label} now {med['now']:.{digits}f} s"
    if "baseline" in med:
        line += f", baseline {med['baseline']:.{digits}f} s, now/baseline {med['now'] / med['baseline']:.2f}"
    return line
