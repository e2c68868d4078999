"""Experiment cells in parallel on one machine: up to N runs at once, each in its own process.

The parent process plans and records the experiment and creates every missing
run first, in the grid's order, so the runs (names, configs, ids) are fixed
before any of them starts and are the runs a sequential execution would have.
Then it hands the unfinished runs to at most ``workers`` child processes.

A child is a plain ``tprompt resume RUN`` process (its argv comes from the
caller): the very code path of ``run``/``resume``, with its own connection to
the database file, its run lease, its progress and its Ctrl-C = pause. WAL,
the leases and the idempotent appends make the concurrent writers safe, and
the LLM cache lives in the same file, so a resumed child pays no call twice.
Separate processes (rather than threads or ``multiprocessing``) also give each
run its own model loading, signal handling and exit code, and let a child
that crashes take nothing else with it.

Children start in their own session, so a terminal's Ctrl-C reaches only the
parent; the parent forwards each SIGINT/SIGTERM it gets as one SIGINT to every
running child (the first pauses it, a second makes it quit now) and starts no
new child after the first. A child whose parent dies (kill -9 of the driver) pauses
itself (:func:`tprompt._signals.pause_when_driver_gone`): no orphan goes on. A failed child is reported for its cell; the others
go on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO

from .._signals import DRIVER_ENV, Interrupts
from ..errors import UsageError
from ..stores import EventLog
from ..stores.projection import RunState
from .grid import CellRun, Experiment, find_cell_run, preflight_experiment, record_experiment

#: How often the parent looks at its children (seconds); progress is redrawn at most every ``_TICK``.
_POLL = 0.05
_TICK = 0.5


@dataclass(frozen=True, slots=True)
class CellOutcome:
    """How one run of the grid ended in this execution."""

    index: int
    cell_run: CellRun
    state: RunState
    #: the child's exit code (None: the run was already complete, no child ran)
    returncode: int | None = None
    #: a failed child's last line on stderr, or the run's recorded error
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None


@dataclass(slots=True)
class _Child:
    index: int
    cell_run: CellRun
    run_id: str
    proc: subprocess.Popen[bytes]
    stderr: IO[bytes]
    signals: int = 0
    started: float = field(default_factory=time.monotonic)


def prepare_runs(log: EventLog, experiment: Experiment) -> tuple[Experiment, list[tuple[CellRun, str]]]:
    """Check, record and create: the recorded experiment and every planned run with its run id.

    Runs that exist (found by name and config) are reused; missing ones are
    created (``create_run``) in the grid's order.

    Raises:
        ConfigError, UnknownTask, UnknownModel: before anything is written.
    """
    from ..graph.api import create_run

    opened = preflight_experiment(experiment)
    experiment = record_experiment(log, experiment)
    runs = []
    for index, cell_run in enumerate(experiment.runs):
        run_id = find_cell_run(log, cell_run) or create_run(log, cell_run.config, resources=opened.pop(index, None))
        runs.append((cell_run, run_id))
    return experiment, runs


def run_parallel(
    log: EventLog,
    experiment: Experiment,
    *,
    workers: int,
    argv: Callable[[str], Sequence[str]],
    on_start: Callable[[CellRun, str, int, int], None] | None = None,
    on_finish: Callable[[CellOutcome, int], None] | None = None,
    on_skip: Callable[[CellRun, RunState, int, int], None] | None = None,
    on_tick: Callable[[list[tuple[int, CellRun, RunState]], int], None] | None = None,
    on_signal: Callable[[int], None] | None = None,
) -> tuple[Experiment, list[CellOutcome]]:
    """Record ``experiment``, create its runs, and run the unfinished ones in up to ``workers`` processes.

    ``argv(run_id)`` is the command of the child that runs or resumes one run
    (``tprompt resume RUN`` against ``log``'s file). Callbacks, all in this
    process: ``on_start(cell_run, run_id, index, total)`` when a child starts,
    ``on_finish(outcome, total)`` when it ends, ``on_skip`` for runs already
    complete, ``on_tick(running, total)`` about twice a second with the
    state of every running cell, ``on_signal(n)`` after the n-th SIGINT/SIGTERM.

    Returns:
        the recorded experiment and one outcome per planned run, in the grid's
        order (runs never started, after a Ctrl-C, with their current state).

    Raises:
        UsageError: ``workers`` < 1 or an in-memory database (children need a file).
    """
    if workers < 1:
        raise UsageError(f"--workers {workers}: give at least 1")
    if log.path == ":memory:" or not log.path:
        raise UsageError("parallel cells need a database file", hint="pass --db FILE, or use --workers 1")
    experiment, runs = prepare_runs(log, experiment)
    total = len(runs)
    outcomes: dict[int, CellOutcome] = {}
    todo: list[tuple[int, CellRun, str]] = []
    for index, (cell_run, run_id) in enumerate(runs, start=1):
        state = log.state(run_id)
        if state.status == "completed":
            outcomes[index] = CellOutcome(index, cell_run, state)
            if on_skip is not None:
                on_skip(cell_run, state, index, total)
        else:
            todo.append((index, cell_run, run_id))
    todo.reverse()  # pop() from the end hands them out in the grid's order
    running: dict[int, _Child] = {}
    child_env = {**os.environ, DRIVER_ENV: str(os.getpid())}  # a child pauses if this process dies (kill -9)
    interrupts = Interrupts()
    last_tick = 0.0
    announced = 0
    with interrupts:
        try:
            while running or (todo and not interrupts.count):
                if on_signal is not None and announced < interrupts.count:
                    announced = interrupts.count
                    on_signal(announced)
                while todo and not interrupts.count and len(running) < workers:
                    index, cell_run, run_id = todo.pop()
                    stderr = tempfile.TemporaryFile()  # noqa: SIM115 -- the child's; closed when it ends
                    proc = subprocess.Popen(list(argv(run_id)), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                            stderr=stderr, start_new_session=True, env=child_env)
                    running[index] = _Child(index, cell_run, run_id, proc, stderr)
                    if on_start is not None:
                        on_start(cell_run, run_id, index, total)
                for child in list(running.values()):
                    while child.signals < interrupts.count and child.proc.poll() is None:
                        child.proc.send_signal(signal.SIGINT)
                        child.signals += 1
                    if child.proc.poll() is not None:
                        del running[child.index]
                        outcome = _finished(log, child, interrupted=interrupts.count > 0)
                        outcomes[child.index] = outcome
                        if on_finish is not None:
                            on_finish(outcome, total)
                now = time.monotonic()
                if on_tick is not None and running and now - last_tick >= _TICK:
                    last_tick = now
                    on_tick([(c.index, c.cell_run, log.state(c.run_id)) for c in running.values()], total)
                if running:
                    time.sleep(_POLL)  # a poll of the children, not a wait for an outcome
        finally:
            for child in running.values():  # an exception in this process: leave no child running unpaused
                if child.proc.poll() is None:
                    child.proc.send_signal(signal.SIGINT)
            for child in running.values():
                try:
                    child.proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    child.proc.kill()
                child.stderr.close()
    return experiment, in_grid_order(log, runs, outcomes)


def in_grid_order(log: EventLog, runs: Sequence[tuple[CellRun, str]], outcomes: dict[int, CellOutcome]) -> list[CellOutcome]:
    """One outcome per planned run, in the grid's order; runs never started get their current state."""
    for index, (cell_run, run_id) in enumerate(runs, start=1):
        if index not in outcomes:
            outcomes[index] = CellOutcome(index, cell_run, log.state(run_id))
    return [outcomes[i] for i in sorted(outcomes)]


def _finished(log: EventLog, child: _Child, *, interrupted: bool) -> CellOutcome:
    code = child.proc.returncode
    child.stderr.seek(0)
    text = child.stderr.read().decode("utf-8", "replace")
    lines = [ln.strip().removeprefix("error: ") for ln in text.splitlines() if ln.strip()]
    child.stderr.close()
    state = log.state(child.run_id)
    error = None
    if state.status == "failed":
        error = state.error or (lines[-1] if lines else f"exit code {code}")
    elif code != 0 and not interrupted:
        # A child that died before recording anything (a busy lease, a crash): its own last word.
        error = lines[-1] if lines else f"exit code {code}"
    return CellOutcome(child.index, child.cell_run, state, code, error)


def describe(state: RunState) -> str:
    """Where a running cell stands, in a few words: stage, step and best objective."""
    if state.stage is None:
        return state.status
    steps = state.config.stage_steps(state.stage) if state.config else 0
    text = f"{state.stage} stage, step {max(state.step, 0)}/{steps}"
    best = state.best(state.stage)
    if best is not None:
        text += f", best {best.objective:.3f}"
    return text


__all__ = ("CellOutcome", "Interrupts", "describe", "in_grid_order", "prepare_runs", "run_parallel")
