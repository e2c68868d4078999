"""Fixtures shared by the whole test suite (keep them generic)."""

from __future__ import annotations

import functools
import json
import os
import select
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from mlflow_server import mlflow_server  # noqa: F401  (a session fixture: one MLflow server for the suite)

from tprompt.stores import EventLog, PromptCandidate, RunCreated, prompt_id_of


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (read from /proc: Linux)."""
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


#: A test that reads the process table from /proc and waits on pidfds runs on Linux only.
needs_proc_and_pidfds = pytest.mark.skipif(not Path("/proc/self/stat").exists() or not hasattr(os, "pidfd_open"),
                                           reason="reads the process table from /proc and waits on pidfds (Linux)")


def worker_inside(proc: subprocess.Popen[Any], mark: Path, timeout: float = 300) -> int:
    """The pid a worker writes to ``mark`` once it is inside the user's code, polled while the run ``proc`` lives
    (``timeout`` bounds a hang only)."""
    deadline = time.monotonic() + timeout
    while not (mark.exists() and mark.read_text()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return int(mark.read_text())


def paused_by(sig: int, proc: subprocess.Popen[str], worker_pid: int) -> dict[str, Any]:
    """Send ``sig`` to ``tprompt run --json`` held inside a worker's call: the run must pause at once (not after
    the worker's own timeout), exit 0 and end the worker. Its result."""
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    result: dict[str, Any] = json.loads(out)
    assert result["status"] == "paused"
    wait_gone(worker_pid)  # the run ended the worker stuck in the user's code
    return result


def wait_gone(pid: int, timeout: float = 60) -> None:
    """Wait until there is no process ``pid`` (``timeout`` bounds a hang only)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        assert time.monotonic() < deadline
        time.sleep(0.05)


def kill_and_wait_for(proc: subprocess.Popen[Any], pids: Sequence[int], deadline: float) -> None:
    """Kill ``proc`` and wait until the processes ``pids`` have exited (``deadline`` seconds bounds a hang on each).

    They need not be our children: each is waited on through its pidfd (readable once it exits), opened before
    the kill. Linux only (:data:`needs_proc_and_pidfds`).
    """
    handles = [os.pidfd_open(p) for p in pids]
    proc.kill()
    proc.wait(timeout=deadline)
    try:
        for fd in handles:
            select.select([fd], [], [], deadline)
    finally:
        for fd in handles:
            os.close(fd)


def cli_in_process(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``tprompt ARGV`` run in this process: (exit code, stdout, stderr); an uncaught exception fails the test."""
    from tprompt.cli import main

    capsys.readouterr()
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """``cli(*args) -> (exit code, stdout, stderr)``: the CLI in this process (a test module may define its own)."""
    return functools.partial(cli_in_process, capsys)


def run_created(name: str | None = None, *, target_task: str = "target", **config: object) -> RunCreated:
    """A minimal valid first event of a run."""
    text = "Answer the question."
    return RunCreated(
        config=dict(config),
        source_tasks=["source"],
        target_task=target_task,
        original_prompt=PromptCandidate(prompt_id=prompt_id_of(text), text=text, origin="original"),
        name=name,
    )


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where a test's file database goes (not created)."""
    return tmp_path / "tprompt.db"


@pytest.fixture(params=["memory", "file"])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventLog]:
    """An empty EventLog, once in memory and once on a file: every store test runs on both."""
    path = ":memory:" if request.param == "memory" else tmp_path / "store.db"
    with EventLog(path) as opened:
        yield opened


@pytest.fixture
def new_run() -> Callable[..., str]:
    """``new_run(log, name=None, **config) -> run_id``: create a run with a valid first event."""

    def make(log: EventLog, name: str | None = None, **config: object) -> str:
        return log.create_run(run_created(name, **config))

    return make


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A completed Transfer-Prompting run on the fake model (source and target stages, tested), once per module:
    its database and run id."""
    from test_graph import run_in_process

    db = tmp_path_factory.mktemp("finished") / "t.db"
    log, run_id = run_in_process(db)
    log.close()
    return db, run_id


def _session_database(name: str, build: str, copy_name: str) -> tuple[Any, Any]:
    """Two fixtures: ``NAME_master``, the database ``_tui_db.BUILD`` writes once per session (fixed ids and times),
    and ``NAME``, a private copy of it named ``COPY_NAME`` (tests may write to it)."""

    @pytest.fixture(scope="session", name=f"{name}_master")
    def master(tmp_path_factory: pytest.TempPathFactory) -> Path:
        import _tui_db

        path = tmp_path_factory.mktemp(name) / f"{name}.db"
        with pytest.MonkeyPatch.context() as mp:
            _tui_db.deterministic(mp)
            getattr(_tui_db, build)(path)
        return path

    @pytest.fixture(name=name)
    def copy(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
        return Path(shutil.copy(request.getfixturevalue(f"{name}_master"), tmp_path / copy_name))

    return master, copy


#: recorded: a finished run, its fork onto another target and a markup-laden run, by real fake-model runs
recorded_master, recorded = _session_database("recorded", "build_recorded_db", "tprompt.db")
#: hostile: every text holds terminal escapes and markup
hostile_master, hostile = _session_database("hostile", "build_evil_db", "hostile.db")
