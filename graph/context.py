"""What the graph's nodes share during one run: LangGraph's runtime context.

A :class:`RunContext` holds the run's resources (the event log, the recorder,
the proposer and scorer models, the tasks). The algorithm's rules over the
run's projection are pure functions of (state, config) in :mod:`.rules`.
Nodes receive the context as ``runtime.context``; they never keep state in it:
the run's state is the projection in the graph state, folded from the log.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..config import base_urls
from ..evaluator import Example, ObjectiveWeights, Task, load_task, objective, resolve_mode
from ..evaluator.registry import MetricSet, resolve_metrics, run_weights
from ..evaluator.tasks import task_template
from ..evaluator.template import ChatTemplate
from ..models import ChatBackend, Recorder
from ..models.recorder import CallSite
from ..stores import EventLog
from ..stores.events import Event, Stage, StoredEvent
from ..stores.projection import RunState, fold
from ..stores.summary import summarize
from .config import RunConfig
from .rules import ScoreJob, stage_tasks, step_label

#: Model specs whose calls go over the network: a step's candidates are scored concurrently there.
_LOCAL_PREFIXES = ("smollm2", "hf:", "fake")

#: The evaluator's objective: metrics -> one number to maximize.
Objective = Callable[[Mapping[str, float | None]], float]


class Abandon(Exception):
    """Control flow: a pause was requested while a node was working; its unfinished piece is dropped."""


@dataclass
class RunContext:
    """The run-scoped resources and rules every node reads (``runtime.context``)."""

    log: EventLog
    run_id: str
    config: RunConfig
    recorder: Recorder
    proposer: ChatBackend
    scorer: ChatBackend
    #: the LLM judge (None: no judge configured)
    judge: ChatBackend | None = None
    #: tasks given as Python objects (by name); others are loaded by name or path
    tasks: dict[str, Task] = field(default_factory=dict)
    #: replaces the weighted objective of ``config.weights``
    objective_fn: Objective | None = None
    pause_check: Callable[[], bool] | None = None
    max_cost: float | None = None
    #: scorer calls on training examples after which the run pauses (``--max-rollouts``)
    max_rollouts: int | None = None
    pause: threading.Event = field(default_factory=threading.Event)
    pause_reason: str = "user"
    _examples: dict[tuple[str, str, int], list[Example]] = field(default_factory=dict)
    _metric_set: MetricSet | None = None

    # -- the log -------------------------------------------------------------------------

    def emit(self, state: RunState, *events: Event) -> tuple[list[StoredEvent], RunState]:
        """Append ``events`` atomically after ``state``'s last event; the stored events and the new state."""
        expected = state.last_seq + 1
        ids = [f"{self.run_id}:{expected + i}:{ev.type}" for i, ev in enumerate(events)]
        after: list[RunState] = []

        def summary(stored: list[StoredEvent]) -> tuple[int, str]:
            # The run's row in `tprompt runs`, written with the events it describes.
            after.append(fold(stored, state=state))  # one state copy per append, not per event
            return after[0].last_seq, summarize(after[0], "").to_json()

        stored = self.log.append(self.run_id, list(events), expected_seq=expected, event_ids=ids, summary=summary)
        return stored, after[0] if after else state

    # -- tasks and examples ------------------------------------------------------------------

    def task(self, name: str) -> Task:
        if name not in self.tasks:
            self.tasks[name] = load_task(name)
        task = self.tasks[name]
        if self.config.description is not None and name == self.config.target_task:
            return task.model_copy(update={"description": self.config.description})
        return task

    def template_for(self, task: Task) -> ChatTemplate | None:
        """The template ``task`` is scored under: the run's (the user's), or None (the bundled Q&A template)."""
        return task_template(self.config.template, task.name)

    def stage_tasks(self, state: RunState, stage: Stage) -> list[str]:
        return stage_tasks(state, self.config, stage)

    def examples(self, task: str, split: str, n: int) -> list[Example]:
        key = (task, split, n)
        if key not in self._examples:
            self._examples[key] = self.task(task).sample(n, split=split, seed=self.config.seed)
        return self._examples[key]

    def mode_for(self, task: Task) -> str:
        return resolve_mode(self.config.mode, task, self.scorer)

    @property
    def metric_set(self) -> MetricSet:
        """The run's metric plug-ins, re-created from its config (names or import paths, versions checked)."""
        if self._metric_set is None:
            self._metric_set = resolve_metrics(self.config.metrics, self.config.metric_versions,
                                               timeout=self.config.metric_timeout, abandoned=self.pause.is_set)
        return self._metric_set

    @property
    def weights(self) -> ObjectiveWeights:
        return ObjectiveWeights(**run_weights(self.config.weights, self.metric_set))

    def objective(self, metrics: Mapping[str, float | None]) -> float:
        if self.objective_fn is not None:
            return float(self.objective_fn(metrics))
        return objective(dict(metrics), self.weights)

    @property
    def scorer_is_remote(self) -> bool:
        return not self.config.scorer.startswith(_LOCAL_PREFIXES)

    @property
    def served_width(self) -> int:
        """Requests a served scorer takes at once: ``concurrency`` on each of its endpoints."""
        return self.config.concurrency * max(1, len(base_urls(self.config.base_url)))

    # -- pausing ---------------------------------------------------------------------------

    def pause_requested(self) -> bool:
        if self.pause.is_set():
            return True
        if self.pause_check is not None and self.pause_check():
            self.pause.set()
            return True
        if self.max_cost is not None and self.spent() >= self.max_cost:
            self.pause_reason = "budget"
            self.pause.set()
            return True
        return False

    def pause_for_rollouts(self) -> None:
        """Pause the run: the next scoring would take it past ``max_rollouts``."""
        self.pause_reason = "rollouts"
        self.pause.set()

    def spent(self) -> float:
        """USD of this run's calls answered by a model (cache hits are free)."""
        return sum(row[5] or 0.0 for row in self.recorder.store.spend([self.run_id]))

    def reporter(self, label: str, out: Callable[[str, int, int], None]) -> Callable[[int, int], None]:
        """A progress callback for scoring: ``out(label, done, total)``; abandons the work once a pause is requested."""

        def report(done: int, total: int) -> None:
            if self.pause.is_set():
                raise Abandon()
            out(label, done, total)

        return report

    # -- calls -------------------------------------------------------------------------------------

    def call_site(
        self, run: RunState, agent: str, *, step: str | None = None, recorder: Recorder | None = None
    ) -> CallSite:
        """Where ``agent``'s model calls are filed: this run, ``step`` (default: the step in flight),
        and the seq of the event the node appends next (the one that will cite them)."""
        if step is None:
            if run.in_flight is None:
                raise ValueError("no step is in flight: name the step the calls belong to")
            step = step_label(run.stage or "", run.in_flight)
        return (recorder or self.recorder).at(agent, run_id=self.run_id, step=step, seq=run.last_seq + 1)


__all__ = ("Abandon", "Objective", "RunContext", "ScoreJob")
