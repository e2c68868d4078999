"""Driving one run through the graph: resume, stream, pause, fail.

:class:`Runner` folds the run's projection from the log (once), opens its
:class:`RunResources` (tasks, metrics, objective, model views) unless given
them, builds the :class:`RunContext` (those, the log, the recorder), and streams the compiled
graph (``stream_mode=["updates", "custom"]``). What it yields, and what the
CLI and the TUI show, is LangGraph's stream: the events each node appended
(:class:`EventsAppended`) and the progress inside a node (:class:`Progress`).

Pausing happens between nodes (the driver stops streaming and appends
``run.paused``) or inside scoring (the node abandons the candidate in flight;
the answers already recorded stay). Requests to a served model that are in
flight are abandoned too, even while they hang: the recorder stops waiting for
them once the run's pause flag is up (:class:`~tprompt.models.recorder.CallsAbandoned`).
A ``tprompt pause RUN`` from another process raises that flag within
:data:`PAUSE_POLL_S`, read by a watcher thread while the graph runs. Either
way the log says where to continue, and the recorder's cache makes repeated
model calls free.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import TPromptError, UsageError
from ..evaluator import Task
from ..evaluator.metric_worker import MetricsAbandoned
from ..models import CallsAbandoned, Recorder
from ..stores import EventLog
from ..stores.control import mark_handled, pause_requested
from ..stores.events import RunFailed, RunPaused, RunResumed, StoredEvent
from ..stores.leases import run_lease
from ..stores.projection import RunState
from .config import RunConfig
from .context import Abandon, RunContext
from .resources import ExecutionOptions, Objective, RunResources
from .rules import next_node, rollouts_exhausted, stage_tasks


@dataclass(frozen=True, slots=True)
class EventsAppended:
    """A node appended ``events``; ``state`` is the run's projection after them."""

    node: str
    events: list[StoredEvent]
    state: RunState


@dataclass(frozen=True, slots=True)
class Progress:
    """Work inside a node: ``done`` of ``total`` (examples, or proposals) for ``label``."""

    label: str
    done: int
    total: int


Update = EventsAppended | Progress

#: How often a running run looks for a ``tprompt pause`` from another process while a node works.
PAUSE_POLL_S = 0.5


class Runner:
    """Executes (or continues) one run. One Runner per process per run.

    Args:
        log: a writable event log.
        run_id: the run; its events so far decide where execution continues.
        pause_check: called between pieces of work; True pauses the run. A
            ``tprompt pause RUN`` from another process always does (the
            request is read from the database, and cleared when honoured).
        tasks: tasks given as Python objects, by the names the config uses.
        objective: replaces the weighted objective (metrics -> float).
        graph: a compiled graph from :func:`build_graph` (default: the
            Transfer-Prompting or the target-only graph, as configured).
        options: this execution's options (concurrency and request timeout
            over the run's config: they change how the calls are made, not
            what the run records; ``max_cost``: USD, once the run's paid calls
            reach it the run pauses, reason ``budget``; ``max_rollouts``: scorer
            calls on training examples, both stages: the run scores what fits,
            then pauses, reason ``rollouts``, before a scoring job or a new
            step that would go past it, never exceeded; ``force``: take over
            the run's lease from a process on another host, see
            :func:`tprompt.stores.leases.acquire`).
        resources: the run's resources, already opened (by :func:`create_run`'s
            caller, say); opened here from the run's config when not given, or
            when they were opened for another config.
    """

    def __init__(
        self,
        log: EventLog,
        run_id: str,
        *,
        pause_check: Callable[[], bool] | None = None,
        tasks: Mapping[str, Task] | None = None,
        objective: Objective | None = None,
        graph: Any = None,
        options: ExecutionOptions | None = None,
        resources: RunResources | None = None,
    ) -> None:
        self.log = log
        self.run_id = log.resolve(run_id)
        # A run this log has just written (created, say) is not folded again.
        self.state = log.known_state(self.run_id) or log.state(self.run_id)
        recorded = self.state.config
        if recorded is None:
            raise UsageError(f"run {self.run_id} has no configuration event; it cannot be run")
        if (resources is None or not resources.matches(recorded) or (options is not None and options != resources.options)
                or (objective is not None and objective is not resources.evaluation.objective_fn)):
            names = stage_tasks(self.state, recorded, "source") + stage_tasks(self.state, recorded, "target")
            # Unknown tasks, a metric that no longer imports or changed version, fail here, before anything is written.
            resources = RunResources.open(recorded, tasks=tasks, task_names=names, options=options, objective_fn=objective)
        # A runner is a fresh execution: resources an earlier one paused (their flag up) must not pause this one.
        resources.pause.clear()
        self.resources = resources
        self.options = resources.options
        self.force = self.options.force
        self.config: RunConfig = resources.config
        self.context = RunContext(
            log=log, run_id=self.run_id, resources=resources,
            recorder=Recorder(log, run_id=self.run_id, prices=self.config.prices),
            pause_check=lambda: bool(pause_check and pause_check()) or pause_requested(log, self.run_id),
        )
        self.graph = graph

    # -- what front ends and tests ask of a runner ---------------------------------------------

    @property
    def proposer(self) -> Any:
        return self.context.proposer

    @property
    def scorer(self) -> Any:
        return self.context.scorer

    @property
    def recorder(self) -> Recorder:
        return self.context.recorder

    @property
    def pause_reason(self) -> str:
        return self.context.pause_reason

    def task(self, name: str) -> Task:
        return self.context.task(name)

    def mode_for(self, task: Task) -> str:
        return self.context.mode_for(task)

    def spent(self) -> float:
        return self.context.spent()

    def request_pause(self) -> None:
        """Ask the run to pause at the next safe point (thread- and signal-safe)."""
        self.context.pause.set()

    # -- driving -------------------------------------------------------------------------------

    def run(self, on_update: Callable[[Update], None] | None = None) -> RunState:
        """Run until the run completes or pauses, passing each streamed update to ``on_update``.

        Returns the final state.

        Raises:
            RunBusy: another live process runs it (nothing is written).
            TPromptError: a failure (recorded as ``run.failed`` first; resumable).
        """
        for update in self.stream():
            if on_update is not None:
                on_update(update)
        return self.state

    def stream(self) -> Iterator[Update]:
        """Run until the run completes or pauses, yielding what the graph streams.

        Holds the run's lease while it runs (RunBusy if another live process
        runs it). A failure is recorded as ``run.failed`` and re-raised.
        """
        with run_lease(self.log, self.run_id, force=self.force):
            # Whoever held the run before may have appended since this runner folded it (then: fold again).
            if self.log.last_seq(self.run_id) != self.state.last_seq:
                self.state = self.log.state(self.run_id)
            mark_handled(self.log, self.run_id)  # a stale pause request must not stop a fresh start
            yield from self._stream()
            if self.state.status == "paused":
                mark_handled(self.log, self.run_id)

    def _stream(self) -> Iterator[Update]:
        from .build import build_graph, recursion_limit

        s = self.state
        if s.status == "paused" and self._out_of_rollouts():
            return  # paused at --max-rollouts, and still out of them: nothing to do, nothing written
        if s.status in ("paused", "failed") or (s.status == "running" and s.last_seq > 0):
            yield self._append("resume", RunResumed())
        graph = self.graph if self.graph is not None else build_graph(transfer=self.config.transfer,
                                                                        judge=self.config.judge is not None)
        ctx = self.context
        stop_watching = self._watch_pause()
        stream = graph.stream(
            {"run": self.state, "events": []},
            context=ctx,
            stream_mode=["updates", "custom"],
            config={"recursion_limit": recursion_limit(self.config, len(graph.nodes))},
        )
        try:
            for mode, chunk in stream:
                if mode == "custom":
                    yield Progress(chunk["label"], chunk["done"], chunk["total"])
                    continue
                for node, update in chunk.items():
                    if not update:
                        continue
                    self.state = update["run"]
                    yield EventsAppended(node, list(update["events"]), self.state)
                if self.state.status == "running" and (ctx.pause_requested() or self._out_of_rollouts()):
                    break  # between two nodes: nothing is in flight
        except (Abandon, CallsAbandoned, MetricsAbandoned):
            self.state = self.log.state(self.run_id)  # what the node appended before it gave up
        except TPromptError as exc:
            self._fail(exc, exc.code, exc.is_retryable)
            raise
        except KeyboardInterrupt:
            self.state = self.log.state(self.run_id)
        except Exception as exc:
            self._fail(exc, type(exc).__name__, False)
            raise
        finally:
            stream.close()  # waits for a node still running (it abandons its work once a pause is asked)
            stop_watching()
        if self.state.status == "running":
            yield self._append("pause", RunPaused(reason=ctx.pause_reason))

    def _out_of_rollouts(self) -> bool:
        """``--max-rollouts`` is reached before a new step: pause instead of paying its proposer."""
        ctx = self.context
        if ctx.max_rollouts is None or next_node(self.state, self.config) != "propose":
            return False
        rows = ctx.train_rows(ctx.stage_tasks(self.state, self.state.stage)) if self.state.stage else {}
        if not rollouts_exhausted(self.state, self.config, ctx.max_rollouts, rows):
            return False
        ctx.pause_reason = "rollouts"
        return True

    def _watch_pause(self) -> Callable[[], None]:
        """Start a thread raising the pause flag on a pause request (``tprompt pause``, ``pause_check``).

        Between nodes the driver asks itself; this covers a node that is
        waiting for model calls, which only looks at the flag.
        """
        ctx = self.context
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(PAUSE_POLL_S) and not ctx.pause.is_set():
                try:
                    if ctx.pause_check is not None and ctx.pause_check():
                        ctx.pause.set()
                except Exception:  # a busy or closing database: the driver looks again between nodes
                    continue

        thread = threading.Thread(target=watch, name=f"tprompt-pause-{self.run_id}", daemon=True)
        thread.start()

        def stop_watching() -> None:
            stop.set()
            thread.join()

        return stop_watching

    def _append(self, node: str, event: Any) -> EventsAppended:
        stored, self.state = self.context.emit(self.state, event)
        return EventsAppended(node, stored, self.state)

    def _fail(self, exc: BaseException, code: str, retryable: bool) -> None:
        try:
            # After whatever the node appended before it failed (this process holds the run's lease).
            self.log.append(
                self.run_id,
                [RunFailed(error=str(exc) or type(exc).__name__, code=code, retryable=retryable)],
                expected_seq=self.log.last_seq(self.run_id) + 1,
            )
        except TPromptError:
            pass  # the store itself failed; the original error is what matters
        self.state = self.log.state(self.run_id)


__all__ = ("EventsAppended", "Progress", "Runner", "Update")
