"""Test servers die with the test process that started them, even when it is killed with kill -9.

    python tests/server_guard.py PARENT_PID COMMAND...

:func:`start_guarded` starts this file in a session (and process group) of its own: it runs COMMAND in
that group, waits for it and exits with its status. Once PARENT_PID is no longer its parent (pytest
died, even by kill -9, so nothing ran its fixture's teardown), it kills the whole group: the server
and whatever it started (MLflow's uvicorn worker, vLLM's engine process), which would otherwise go on
as orphans holding ports and memory. A SIGTERM to the group (a fixture's orderly stop) reaches the
server; this process ignores it and exits when the server has, so waiting on it waits on the server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

GUARD = Path(__file__).resolve()


def start_guarded(command: Sequence[str], *, stdout: IO[Any] | int | None = None,
                  env: Mapping[str, str] | None = None, cwd: str | Path | None = None) -> subprocess.Popen:
    """Start ``command`` under the guard, in a new process group led by the guard (its pid is the group's id).

    Signal the group (``os.killpg(proc.pid, ...)``) to stop it; the group is also killed when this
    process dies without doing so.
    """
    return subprocess.Popen(
        [sys.executable, str(GUARD), str(os.getpid()), *command],
        stdout=stdout, stderr=subprocess.STDOUT if stdout is not None else None,
        env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True,
    )


def main(argv: list[str]) -> int:
    parent, command = int(argv[1]), argv[2:]
    child = subprocess.Popen(command)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # after the start: the server keeps the default action
    from tprompt._signals import watch_parent

    # The parent is given, not read here: if it died before this line, the first poll sees another parent.
    watch_parent(parent, lambda: os.killpg(0, signal.SIGKILL))
    code = child.wait()
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
