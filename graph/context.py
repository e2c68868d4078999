"""What the graph's nodes share during one run: LangGraph's runtime context.

A :class:`RunContext` holds the run's resources (:class:`RunResources`: the
tasks, metrics, objective and model views) with the event log and the recorder. The algorithm's rules over the
run's projection are pure functions of (state, config) in :mod:`.rules`.
Nodes receive the context as ``runtime.context``; they never keep state in it:
the run's state is the projection in the graph state, folded from the log.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from ..config import base_urls, in_process_spec
from ..evaluator import Example, ScoreMode, Task, resolve_mode
from ..evaluator.program import Program
from ..evaluator.registry import MetricSet
from ..evaluator.tasks import task_template
from ..evaluator.template import ChatTemplate
from ..models import ChatBackend, Recorder
from ..models.recorder import CallSite
from ..stores import EventLog
from ..stores.events import Event, Stage, StoredEvent
from ..stores.projection import RunState
from .config import RunConfig
from .resources import Objective, RunResources
from .rules import ScoreJob, stage_tasks, step_label


class Abandon(Exception):
    """Control flow: a pause was requested while a node was working; its unfinished piece is dropped."""


@dataclass
class RunContext:
    """The run-scoped resources and rules every node reads (``runtime.context``).

    The resources (tasks, metrics, objective, model views, this execution's
    options) are :class:`RunResources`, opened once per execution; the
    context adds the log, the recorder and the pause machinery.
    """

    log: EventLog
    run_id: str
    resources: RunResources
    recorder: Recorder
    pause_check: Callable[[], bool] | None = None
    pause_reason: str = "user"
    _examples: dict[tuple[str, str, int], list[Example]] = field(default_factory=dict)

    # -- the resources -------------------------------------------------------------------

    @property
    def config(self) -> RunConfig:
        return self.resources.config

    @property
    def proposer(self) -> ChatBackend:
        return self.resources.proposer

    @property
    def scorer(self) -> ChatBackend:
        return self.resources.scorer

    @property
    def judge(self) -> ChatBackend | None:
        return self.resources.judge

    @property
    def program(self) -> Program | None:
        """The user's program whose prompts the run optimizes (None: the scorer answers under one prompt)."""
        return self.resources.program

    @property
    def pause(self) -> threading.Event:
        return self.resources.pause

    @property
    def max_cost(self) -> float | None:
        return self.resources.options.max_cost

    @property
    def max_rollouts(self) -> int | None:
        """Scorer calls on training examples after which the run pauses (``--max-rollouts``)."""
        return self.resources.options.max_rollouts

    # -- the log -------------------------------------------------------------------------

    def emit(self, state: RunState, *events: Event) -> tuple[list[StoredEvent], RunState]:
        """Append ``events`` atomically after ``state``'s last event; the stored events and the new state."""
        return self.log.append_after(state, list(events))

    # -- tasks and examples ------------------------------------------------------------------

    def task(self, name: str) -> Task:
        task = self.resources.task(name)
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

    def train_rows(self, tasks: Iterable[str]) -> dict[str, int]:
        """The training rows a step draws for each of ``tasks``: ``examples``, or fewer when a task has fewer."""
        return {t: len(self.examples(t, "train", self.config.examples)) for t in tasks}

    def mode_for(self, task: Task) -> ScoreMode:
        if self.program is not None:
            return "generate"  # a program's answer is its output
        return resolve_mode(self.config.mode, task, self.scorer)

    @property
    def metric_set(self) -> MetricSet:
        """The run's metric plug-ins (names or import paths, versions checked when the resources were opened)."""
        return self.resources.metric_set

    def objective(self, metrics: Mapping[str, float | None]) -> float:
        return self.resources.objective(metrics)

    @property
    def scorer_is_remote(self) -> bool:
        # A scorer behind a server: a step's candidates are scored concurrently there.
        return not in_process_spec(self.config.scorer)

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
