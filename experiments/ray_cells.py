"""Experiment cells on a Ray cluster: each cell a Ray task writing a shard, the driver's database the one writer.

The design (docs/experiments.md, "Beyond one machine", gives the reasons):

* The driver (``tprompt experiment CONFIG --ray``) records the experiment and
  creates every run in its own database, exactly as ``--workers`` does
  (:func:`~.parallel.prepare_runs`). That file is the only one the driver
  writes and the only one the report and the UI read.
* Each unfinished run becomes one Ray task (a streaming generator). Its
  argument is a *seed*: the run's rows so far, extracted from the driver's
  database (:func:`tprompt.stores.shard.extract`: the run, its transcripts and
  the cache rows they reference) as the bytes of a database file.
* The task writes the seed to the worker's local disk (``TPROMPT_SHARD_DIR`` or
  the temp folder; never a network filesystem, SQLite's WAL needs local
  locks), opens it as its *shard* and runs the run there with the plain
  :class:`~tprompt.graph.runner.Runner`: the run's lease, cache and pause are
  the ones of a normal run.
* As it goes, the task yields a consistent copy of its shard (SQLite's backup
  API) after every event and, between events, at most every ``ship_every``
  seconds when answered calls were recorded; once more at the end. The driver
  merges each copy into its database (:func:`tprompt.stores.shard.absorb`,
  the idempotent, prefix-extending merge), so shipping the same rows again
  is harmless and the run in the driver's database only ever grows.
* A task lost with its worker or node (any Ray system error) is submitted
  again (at most ``attempts`` times per cell), seeded with what the driver has
  merged by then: the retry resumes the run from the last shipped event and the
  cache answers every call whose answer was shipped. What a death costs is the
  calls in flight plus those answered since the last shipment (at most
  ``ship_every`` seconds of answers).
* Ctrl-C: a small actor holds a pause flag that every task's runner polls (the
  ``pause_check`` of :class:`Runner`), so each cell pauses as a normal run does,
  ships its ``run.paused`` and ends; rerunning continues. A second Ctrl-C
  cancels the tasks at once; what was shipped stays.

``import ray`` happens only in this module, and only when a grid runs on Ray.
"""

from __future__ import annotations

import os
import queue
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import local_spec
from ..errors import TPromptError, UsageError
from ..stores import EventLog, StoredEvent
from ..stores.projection import RunState
from .grid import CellRun, Experiment
from .parallel import CellOutcome, Interrupts, in_grid_order, prepare_runs

#: Seconds between two shipments of a shard whose calls (not events) changed.
SHIP_EVERY = 1.0
#: Submissions of one cell before its loss is reported as a failure.
ATTEMPTS = 3
#: Ray CPUs of a cell whose models are served elsewhere (an API, a vLLM server, the fake model).
SERVED_CPUS = 0.25
#: How often a task looks at its shard for rows to ship (seconds).
_LOOK = 0.05
#: How long the driver waits for the next shipment before it redraws progress and looks at signals.
_WAIT = 0.5

INSTALL_HINT = "pip install 'tprompt[ray]'"


def import_ray() -> Any:
    """The ``ray`` module, or one clear error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UsageError("--ray needs Ray, which is not installed", hint=INSTALL_HINT) from None
    return ray


def cell_resources(cell_run: CellRun, *, gpus: bool) -> dict[str, float]:
    """The Ray resources a cell asks for: a CPU (and a GPU on a GPU cluster) for a local model, little otherwise."""
    c = cell_run.config
    if any(local_spec(s) for s in (c.proposer, c.scorer, c.judge)):  # its weights on that node
        return {"num_cpus": 1, "num_gpus": 1 if gpus else 0}
    return {"num_cpus": SERVED_CPUS, "num_gpus": 0}


# -- the task (runs on a worker) -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Settings:
    ship_every: float
    concurrency: int | None
    request_timeout: float | None


def _shard_dir() -> Path:
    base = os.environ.get("TPROMPT_SHARD_DIR") or tempfile.gettempdir()
    Path(base).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="tprompt-shard-", dir=base))


def cell_task(seed: bytes, run_id: str, settings: _Settings, flag: Any = None) -> Iterator[tuple[str, Any]]:
    """Run ``run_id`` in a shard made from ``seed``; yield ``("start", where)``, ``("shard", bytes)``..., ``("end", error)``.

    ``flag`` is the driver's pause actor (None: no pause but ``tprompt pause``
    on the shard). An error of the run (recorded as ``run.failed`` in the
    shard, which is shipped) is the ``end`` item's text, not an exception: only
    a lost worker or node makes the driver submit the cell again.
    """
    from ..graph.resources import ExecutionOptions
    from ..graph.runner import Runner
    from ..stores.shard import snapshot, stamp

    where = socket.gethostname()
    try:
        import ray

        where = f"{ray.get_runtime_context().get_node_id()[:12]} ({where})"
    except Exception:  # run outside Ray (tests of the task itself)
        pass
    yield ("start", where)
    folder = _shard_dir()
    path = folder / "shard.db"
    path.write_bytes(seed)
    updates: queue.Queue[Any] = queue.Queue()
    outcome: list[BaseException | None] = []

    def paused() -> bool:
        if flag is None:
            return False
        try:
            import ray

            return bool(ray.get(flag.is_set.remote(), timeout=10))
        except Exception:  # an unreachable driver: the next look decides
            return False

    try:
        with EventLog(path) as log:
            runner = Runner(log, run_id, pause_check=paused, options=ExecutionOptions(
                concurrency=settings.concurrency, request_timeout=settings.request_timeout))

            def work() -> None:
                try:
                    runner.run(updates.put)
                    outcome.append(None)
                except BaseException as exc:  # recorded as run.failed by the runner; reported in "end"
                    outcome.append(exc)
                finally:
                    updates.put(None)

            thread = threading.Thread(target=work, name=f"tprompt-cell-{run_id}", daemon=True)
            thread.start()
            shipped = stamp(log.store)
            last = time.monotonic()
            finished = False
            while not finished:
                try:
                    finished = updates.get(timeout=_LOOK) is None
                except queue.Empty:
                    pass
                now = stamp(log.store)
                # An event ships at once; answered calls alone at most every ship_every seconds.
                due = finished or now[0] != shipped[0] or time.monotonic() - last >= settings.ship_every
                if due and now != shipped:
                    shipped, last = now, time.monotonic()
                    yield ("shard", snapshot(log.store))
            thread.join()
        error = outcome[0] if outcome else None
        yield ("end", None if error is None else _describe(error))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, TPromptError) else f"{type(exc).__name__}: {exc}"


class PauseFlag:
    """The driver's Ctrl-C, as seen by every task (a Ray actor of no resources)."""

    def __init__(self) -> None:
        self.value = False

    def set(self) -> None:
        self.value = True

    def is_set(self) -> bool:
        return self.value


# -- the driver ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Cell:
    index: int
    cell_run: CellRun
    run_id: str
    gen: Any = None
    attempt: int = 0
    where: str = ""
    seen: int = 0  # the last seq reported to on_events


@dataclass(frozen=True, slots=True)
class Callbacks:
    """What the driver tells its front end (all called in the driver's thread; every one optional)."""

    #: (cell run, run id, index, total, where): a task started on a node ("<node id> (<host>)")
    on_start: Callable[[CellRun, str, int, int, str], None] | None = None
    #: (index, cell run, new events, state, total): events merged into the driver's database
    on_events: Callable[[int, CellRun, list[StoredEvent], RunState, int], None] | None = None
    #: (index, cell run, where, error, attempt, total): a task lost with its worker or node, submitted again
    on_retry: Callable[[int, CellRun, str, str, int, int], None] | None = None
    on_finish: Callable[[CellOutcome, int], None] | None = None
    on_skip: Callable[[CellRun, RunState, int, int], None] | None = None
    on_tick: Callable[[list[tuple[int, CellRun, RunState]], int], None] | None = None
    on_signal: Callable[[int], None] | None = None


def connect(address: str | None) -> Any:
    """Join the Ray cluster at ``address`` ("auto", host:port, ray://...), or ``RAY_ADDRESS``, or start a local one.

    Returns the ``ray`` module. A driver already connected (a test's cluster) stays connected.
    """
    ray = import_ray()
    if ray.is_initialized():
        return ray
    kwargs: dict[str, Any] = {"logging_level": "WARNING", "log_to_driver": False}
    if not address and not os.environ.get("RAY_ADDRESS"):
        kwargs["include_dashboard"] = False  # a local Ray for this one grid
    try:
        ray.init(address=address or None, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"cannot join the Ray cluster at {address or os.environ.get('RAY_ADDRESS') or 'a new local Ray'}: "
                         f"{first}", hint="start one with `ray start --head`, or check --ray-address") from None
    return ray


def run_on_ray(
    log: EventLog,
    experiment: Experiment,
    *,
    address: str | None = None,
    ship_every: float = SHIP_EVERY,
    attempts: int = ATTEMPTS,
    concurrency: int | None = None,
    request_timeout: float | None = None,
    callbacks: Callbacks | None = None,
) -> tuple[Experiment, list[CellOutcome]]:
    """Record ``experiment``, create its runs, and run the unfinished ones as Ray tasks (see the module doc).

    Returns:
        the recorded experiment and one outcome per planned run, in the grid's order.

    Raises:
        UsageError: Ray is not installed, the cluster cannot be joined, or ``log`` is in memory.
    """
    from ..stores.shard import absorb, extract

    cb = callbacks or Callbacks()
    if log.path == ":memory:" or not log.path:
        raise UsageError("cells on Ray need a database file", hint="pass --db FILE")
    if attempts < 1:
        raise UsageError(f"attempts {attempts}: give at least 1")
    ray = connect(address)
    experiment, runs = prepare_runs(log, experiment)
    total = len(runs)
    outcomes: dict[int, CellOutcome] = {}
    todo: list[_Cell] = []
    for index, (cell_run, run_id) in enumerate(runs, start=1):
        state = log.state(run_id)
        if state.status == "completed":
            outcomes[index] = CellOutcome(index, cell_run, state)
            if cb.on_skip is not None:
                cb.on_skip(cell_run, state, index, total)
        else:
            todo.append(_Cell(index, cell_run, run_id, seen=state.last_seq))
    gpus = ray.cluster_resources().get("GPU", 0) > 0
    remote = ray.remote(max_retries=0)(cell_task)  # a lost task is resubmitted here, with a fresh seed
    flag = ray.remote(num_cpus=0)(PauseFlag).remote() if todo else None
    settings = _Settings(ship_every, concurrency, request_timeout)

    def submit(cell: _Cell) -> None:
        cell.attempt += 1
        seed = extract(log.path, cell.run_id)
        cell.gen = remote.options(**cell_resources(cell.cell_run, gpus=gpus),
                                  name=f"tprompt:{cell.cell_run.name}").remote(seed, cell.run_id, settings, flag)

    def merged(cell: _Cell, data: bytes) -> None:
        absorb(log.store, data, cell.run_id)
        new = list(log.events(cell.run_id, after=cell.seen))
        if new:
            cell.seen = new[-1].seq
            if cb.on_events is not None:
                cb.on_events(cell.index, cell.cell_run, new, log.state(cell.run_id), total)

    def finish(cell: _Cell, error: str | None) -> None:
        del running[cell.index]
        state = log.state(cell.run_id)
        if error is None and state.status == "failed":
            error = state.error or "failed"
        outcome = CellOutcome(cell.index, cell.cell_run, state, None if error else 0, error)
        outcomes[cell.index] = outcome
        if cb.on_finish is not None:
            cb.on_finish(outcome, total)

    running: dict[int, _Cell] = {}
    for cell in todo:
        submit(cell)
        running[cell.index] = cell
    announced = 0
    last_tick = 0.0
    with Interrupts() as interrupts:
        try:
            while running:
                if announced < interrupts.count:
                    announced = interrupts.count
                    if announced == 1 and flag is not None:
                        flag.set.remote()  # every runner pauses at its next look and ships its run.paused
                    if cb.on_signal is not None:
                        cb.on_signal(announced)
                    if announced > 1:
                        break
                ready, _ = ray.wait([c.gen for c in running.values()], num_returns=1, timeout=_WAIT)
                for gen in ready:
                    cell = next(c for c in running.values() if c.gen is gen)
                    _advance(ray, cell, merged, finish, submit, attempts, cb, total, paused=interrupts.count > 0)
                now = time.monotonic()
                if cb.on_tick is not None and running and now - last_tick >= _TICK:
                    last_tick = now
                    cb.on_tick([(c.index, c.cell_run, log.state(c.run_id)) for c in running.values()], total)
        finally:
            for cell in running.values():  # a second Ctrl-C or an error here: stop the tasks, keep what was merged
                ray.cancel(cell.gen, force=True)
    return experiment, in_grid_order(log, runs, outcomes)


_TICK = 0.5


def _advance(ray: Any, cell: _Cell, merged: Callable[[_Cell, bytes], None], finish: Callable[[_Cell, str | None], None],
             submit: Callable[[_Cell], None], attempts: int, cb: Callbacks, total: int, *, paused: bool) -> None:
    """Take the next item of ``cell``'s task: merge a shard, report a start or an end, or resubmit a lost task."""
    try:
        ref = next(cell.gen)
        kind, value = ray.get(ref)
    except StopIteration:
        finish(cell, None if cell.where else "the task ended without a word")
        return
    except ray.exceptions.RayTaskError as exc:  # the task's own code raised: the same again would too
        finish(cell, _first_line(exc))
        return
    except ray.exceptions.RayError as exc:  # the worker or its node died, an object was lost
        if paused or cell.attempt >= attempts:
            finish(cell, None if paused else f"lost {cell.attempt} time(s), last on {cell.where or '?'}: {_first_line(exc)}")
            return
        if cb.on_retry is not None:
            cb.on_retry(cell.index, cell.cell_run, cell.where or "?", _first_line(exc), cell.attempt + 1, total)
        cell.where = ""
        submit(cell)
        return
    if kind == "start":
        cell.where = value
        if cb.on_start is not None:
            cb.on_start(cell.cell_run, cell.run_id, cell.index, total, value)
    elif kind == "shard":
        merged(cell, value)
    elif kind == "end":
        finish(cell, value)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


__all__ = (
    "ATTEMPTS",
    "Callbacks",
    "INSTALL_HINT",
    "PauseFlag",
    "SERVED_CPUS",
    "SHIP_EVERY",
    "cell_resources",
    "cell_task",
    "connect",
    "import_ray",
    "run_on_ray",
)
