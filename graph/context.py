"""What the graph's nodes share during one run: LangGraph's runtime context.

A :class:`RunContext` holds the run's resources (the event log, the recorder,
the proposer and scorer models, the tasks) and the rules that read the run's
projection (which tasks a stage uses, the scoring jobs left in a step, the
budget). Nodes receive it as ``runtime.context``; they never keep state in it:
the run's state is the projection in the graph state, folded from the log.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from ..models import ChatBackend, Recorder
from ..evaluator import Example, ObjectiveWeights, Task, load_task, objective, resolve_mode
from ..stores import EventLog
from ..stores.events import Event, PromptCandidate, Stage, StoredEvent, prompt_id_of, tested_roles
from ..stores.projection import RunState, ScoredPrompt, fold
from ..stores.summary import summarize
from .config import RunConfig

#: Model specs whose calls go over the network: a step's candidates are scored concurrently there.
_LOCAL_PREFIXES = ("smollm2", "hf:", "fake")

#: The evaluator's objective: metrics -> one number to maximize.
Objective = Callable[[Mapping[str, float | None]], float]


class Abandon(Exception):
    """Control flow: a pause was requested while a node was working; its unfinished piece is dropped."""


@dataclass(frozen=True, slots=True)
class ScoreJob:
    """One candidate to score on one task (one racing rung, or all the step's examples)."""

    candidate: PromptCandidate
    task: str
    rung: int
    n_examples: int
    #: scorer calls this job adds (racing: the rung's examples beyond the previous rung's)
    new_calls: int


@dataclass
class RunContext:
    """The run-scoped resources and rules every node reads (``runtime.context``)."""

    log: EventLog
    run_id: str
    config: RunConfig
    recorder: Recorder
    proposer: ChatBackend
    scorer: ChatBackend
    #: tasks given as Python objects (by name); others are loaded by name or path
    tasks: dict[str, Task] = field(default_factory=dict)
    #: replaces the weighted objective of ``config.weights``
    objective_fn: Objective | None = None
    pause_check: Callable[[], bool] | None = None
    max_cost: float | None = None
    pause: threading.Event = field(default_factory=threading.Event)
    pause_reason: str = "user"
    _examples: dict[tuple[str, str, int], list[Example]] = field(default_factory=dict)

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
        return self.tasks[name]

    def stage_tasks(self, state: RunState, stage: Stage) -> list[str]:
        if stage == "source":
            return list(self.config.source_tasks) if self.config.transfer else []
        return [state.target_task or self.config.target_task]

    def examples(self, task: str, split: str, n: int) -> list[Example]:
        key = (task, split, n)
        if key not in self._examples:
            self._examples[key] = self.task(task).sample(n, split=split, seed=self.config.seed)
        return self._examples[key]

    def mode_for(self, task: Task) -> str:
        return resolve_mode(self.config.mode, task, self.scorer)

    @property
    def weights(self) -> ObjectiveWeights:
        return ObjectiveWeights(**self.config.weights)

    def objective(self, metrics: Mapping[str, float | None]) -> float:
        if self.objective_fn is not None:
            return float(self.objective_fn(metrics))
        return objective(dict(metrics), self.weights)

    @property
    def scorer_is_remote(self) -> bool:
        return not self.config.scorer.startswith(_LOCAL_PREFIXES)

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

    # -- the algorithm's rules over the projection --------------------------------------------

    def original(self, state: RunState) -> PromptCandidate:
        if state.original_prompt is not None:
            return state.original_prompt
        text = self.config.original_prompt
        return PromptCandidate(prompt_id=prompt_id_of(text), text=text, origin="original")

    def test_roles(self) -> list[str]:
        return tested_roles(self.config.transfer)

    def prompt_for_role(self, state: RunState, role: str) -> PromptCandidate:
        if role == "original":
            return self.original(state)
        best: ScoredPrompt | None = state.best("source" if role == "best_source" else "target")
        if best is None:
            return self.original(state)
        return PromptCandidate(prompt_id=best.prompt_id, text=best.text)

    def budget_left(self, state: RunState) -> int | None:
        """Scorer calls on training examples still allowed (None: no cap)."""
        if self.config.scorer_budget is None:
            return None
        used = state.scorer_calls.get("source", 0) + state.scorer_calls.get("target", 0)
        return max(0, self.config.scorer_budget - used)

    def budget_spent(self, state: RunState) -> bool:
        """True when not even the cheapest scoring job fits in the budget left."""
        left = self.budget_left(state)
        if left is None:
            return False
        cheapest = self.rung_sizes()[0] if self.config.budget == "racing" else self.config.examples
        return left < cheapest

    def rung_sizes(self) -> list[int]:
        n, rungs = self.config.examples, self.config.racing_rungs
        sizes = [max(1, math.ceil(n / 2 ** (rungs - 1 - r))) for r in range(rungs)]
        out: list[int] = []  # drop rungs that would not add examples (tiny N)
        for size in sizes:
            if not out or size > out[-1]:
                out.append(size)
        return out

    def score_jobs(self, state: RunState) -> list[ScoreJob]:
        """The scoring still to do in the step in flight, in a fixed order (one racing rung at a time).

        A job whose answers are recorded but not yet evaluated counts as done.
        """
        stage: Stage = state.stage  # type: ignore[assignment]
        step = state.in_flight
        if step is None:
            return []
        tasks = self.stage_tasks(state, stage)
        done = {(x.prompt_id, x.task, x.rung): x for x in state.step_scores(stage, step)}
        answered = {(a.prompt_id, a.task, a.rung) for a in state.unevaluated}
        cands = list(state.pending)
        racing = self.config.budget == "racing" and step > 0 and len(cands) > 1
        sizes = self.rung_sizes() if racing else [self.config.examples]
        alive = cands
        prev = 0
        for rung, size in enumerate(sizes):
            todo = [
                ScoreJob(c, t, rung, size, size - prev)
                for c in alive
                for t in tasks
                if (c.prompt_id, t, rung) not in done and (c.prompt_id, t, rung) not in answered
            ]
            if todo:
                left = self.budget_left(state)
                if left is not None:
                    fit, spent = [], sum(a.scorer_calls for a in state.unevaluated)
                    for job in todo:
                        if spent + job.new_calls > left:
                            break
                        fit.append(job)
                        spent += job.new_calls
                    return fit  # empty: budget spent, the step closes with what is scored
                return todo
            if any(k not in done for k in ((c.prompt_id, t, rung) for c in alive for t in tasks)):
                return []  # this rung's answers are not evaluated yet: the next rung's ranking needs them
            if rung < len(sizes) - 1:
                ranked = sorted(alive, key=lambda c: -sum(done[(c.prompt_id, t, rung)].objective for t in tasks))
                alive = ranked[: max(1, math.ceil(len(ranked) / 2))]
            prev = size
        return []

    def patience_exhausted(self, state: RunState, stage: Stage, step: int) -> bool:
        patience = self.config.patience
        if patience is None or step < patience:
            return False
        scores = state.stage_scores(stage)

        def best_upto(k: int) -> float:
            vals = [x.objective for x in scores if x.step <= k]
            return max(vals) if vals else float("-inf")

        return best_upto(step) <= best_upto(step - patience)


__all__ = ("Abandon", "Objective", "RunContext", "ScoreJob")
