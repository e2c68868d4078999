"""A real MLflow tracking server on 127.0.0.1 for the telemetry and prompt-registry tests.

MLflow 3's server ingests OpenTelemetry spans at ``/v1/traces`` (OTLP/HTTP,
protobuf; the experiment is named by the ``x-mlflow-experiment-id`` header)
into its SQL store, answers trace searches through its REST API, and holds the
prompt registry: one collector for both. Started once per session (its
database migrations take most of a minute on a loaded machine), with a bounded
wait on ``GET /health``; a server that exits or never answers fails the test
with its log, it is never skipped. Killed (its process group) at the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from served_server import free_port
from server_guard import start_guarded

#: Bounds a hang only: a fresh server migrates its SQLite store first (~50 s on 2 loaded cores).
READY_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class MlflowServer:
    url: str
    log: Path

    @property
    def otlp_env(self) -> dict[str, str]:
        """What a tprompt process needs to send spans to this server's default experiment."""
        return {"OTEL_EXPORTER_OTLP_ENDPOINT": self.url, "OTEL_EXPORTER_OTLP_HEADERS": "x-mlflow-experiment-id=0"}

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    try:
        import mlflow  # noqa: F401
    except ImportError:
        pytest.fail("MLflow is not installed: pip install -e '.[otel,mlflow]' (as .ci/run does)")
    home = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    log = home / "server.log"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    with log.open("w") as out:
        proc = start_guarded(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
             "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}", "--default-artifact-root", str(home / "artifacts"),
             "--workers", "1"],
            stdout=out, env=env,
        )
    server = MlflowServer(f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited with {proc.returncode}:\n{server.log_tail()}")
            try:
                with urllib.request.urlopen(f"{server.url}/health", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not answer within {READY_TIMEOUT_S:.0f} s:\n{server.log_tail()}")
            time.sleep(0.5)
        yield server
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
