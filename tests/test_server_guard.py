"""The test servers (MLflow, transformers serve, vLLM) die with the test process, even when it is killed with kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from conftest import kill_and_wait_for, needs_proc_and_pidfds, process_alive

TESTS = Path(__file__).resolve().parent
DEADLINE = 120  # seconds: a bound on waiting under load, not a wait for something to happen

# A server that starts a worker of its own (as MLflow starts uvicorn, vLLM its engine) and runs until killed.
SERVER = """
import os, signal, subprocess, sys
worker = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()"])
print(os.getpid(), worker.pid, flush=True)
signal.pause()
"""

# pytest's stand-in: it starts the server as the fixtures do, says the guard's pid, and runs until killed.
PYTEST = f"""
import signal, sys
sys.path.insert(0, {str(TESTS)!r})
from server_guard import start_guarded
proc = start_guarded([sys.executable, "-c", {SERVER!r}])
print(proc.pid, flush=True)
signal.pause()
"""


@needs_proc_and_pidfds
def test_a_server_and_its_workers_die_with_a_killed_test_process() -> None:
    # was: the MLflow fixture's server (and its uvicorn worker) ran on after pytest was killed: its own
    # session kept it from the terminal's signals, and the teardown that stops it never ran
    stand_in = subprocess.Popen([sys.executable, "-c", PYTEST], stdout=subprocess.PIPE, text=True)
    pids: list[int] = []
    try:
        assert stand_in.stdout is not None
        pids.append(int(stand_in.stdout.readline()))  # the guard
        pids.extend(int(p) for p in stand_in.stdout.readline().split())  # the server and its worker
        assert len(pids) == 3 and all(process_alive(p) for p in pids)
        kill_and_wait_for(stand_in, pids, DEADLINE)
        assert not [p for p in pids if process_alive(p)], "the server outlived the test process that started it"
    finally:
        stand_in.kill()
        stand_in.wait(timeout=DEADLINE)
        for pid in pids:
            if process_alive(pid):
                os.kill(pid, signal.SIGKILL)
