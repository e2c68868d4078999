"""A real OpenAI-compatible server for the served-model tests: ``transformers serve`` on 127.0.0.1.

It serves the embedded model from its local converted directory (under
TPROMPT_HOME) with the hub switched off, on a free port. Readiness is
``GET /v1/models`` answering 200, polled with a bounded wait; a server that
exits or never answers fails the test with its log, it is never skipped.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from server_guard import start_guarded

#: Bounds a hang only: loading the 135M model takes seconds.
READY_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class Server:
    """A running server: its API root, the model name it serves and its log file."""

    base_url: str
    model: str
    log: Path
    pid: int

    @property
    def spec(self) -> str:
        """The tprompt model spec for this server's model."""
        return f"openai:{self.model}"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_transformers_serve(model_dir: Path, log: Path, *, extra: tuple[str, ...] = (),
                             threads: int | None = None) -> tuple[subprocess.Popen, str]:
    """Start ``transformers serve MODEL_DIR`` on a free port; returns (process, base_url) once it answers.

    ``threads`` sets the server's torch threads (``OMP_NUM_THREADS``; default: torch's, one per core).
    """
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.pop("OPENAI_BASE_URL", None)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    command = [
        sys.executable, "-c", "import sys; from transformers.cli.transformers import main; sys.exit(main())",
        "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port),
        "--device", "cpu", "--dtype", "float32", "--log-level", "warning", *extra,
    ]
    with open(log, "w") as handle:  # the child keeps its own copy of the descriptor
        proc = start_guarded(command, stdout=handle, env=env)
    base_url = f"http://127.0.0.1:{port}/v1"
    wait_ready(proc, base_url, log, what="transformers serve", timeout=READY_TIMEOUT_S)
    return proc, base_url


def wait_ready(proc: subprocess.Popen, base_url: str, log: Path, *, what: str, timeout: float) -> None:
    """Poll ``GET base_url/models`` until it lists a model; raise RuntimeError (with the log) if the server exits or times out."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before answering:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(f"{base_url}/models", timeout=5) as response:
                listed = json.load(response)
            if response.status == 200 and listed.get("data"):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
            pass
        if time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError(f"{what} did not answer /v1/models in {timeout:.0f} s:\n{_tail(log)}")
        time.sleep(0.25)


def stop(proc: subprocess.Popen, *, grace: float = 15.0) -> None:
    """Stop the server we started and its children (its own process group, by its id): SIGTERM, SIGKILL after ``grace`` s."""
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    # Children (vLLM's engine process) may outlive the parent: the group goes whatever the parent did.
    _signal_group(proc, signal.SIGKILL)
    proc.wait()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # started with start_new_session: the group id is the process id
    except (ProcessLookupError, PermissionError):
        pass


def _tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``transformers serve`` on the embedded model's local directory, for the whole session."""
    from tprompt.models._fetch import smollm2_dir

    model_dir = smollm2_dir()  # converts once if needed; the server reads the local copy only
    log = tmp_path_factory.mktemp("served") / "transformers-serve.log"
    try:
        # One torch thread: a decode step's matmuls are tiny, and on a busy machine two threads wait on each other
        # for a core at every operation (an eval of 4 questions: 22 s instead of 75 to 96 s at load average 6.7)
        proc, base_url = start_transformers_serve(model_dir, log, threads=1)
    except RuntimeError as exc:
        pytest.fail(f"the OpenAI-compatible test server did not start: {exc}", pytrace=False)
    try:
        yield Server(base_url=base_url, model=str(model_dir), log=log, pid=proc.pid)
    finally:
        stop(proc)
