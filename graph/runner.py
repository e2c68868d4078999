"""Running one Transfer-Prompting run: the agents as LangGraph nodes over the event log.

The :class:`Runner` holds what the nodes share (the log, the recorder, the
models, the tasks) and the run's projection. Each node does one piece of work,
appends its outcome as events (one transaction, expected seq) and returns; the
graph's conditional edges read the projection to pick the next node. The
projection is rebuilt from the log when a run is resumed, so a killed process
loses at most the piece in flight, and the recorder's cache makes its model
calls free the second time.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from ..agents import ChatRequest, Recorder, get_model
from ..agents.proposer import build_meta_prompt, format_exemplar, meta_messages, select_candidates
from ..agents.transfer import select_transfer
from ..errors import TPromptError, UsageError
from ..evaluator import Evaluation, Example, ObjectiveWeights, Task, load_task, resolve_mode, score_prompt
from ..stores import EventLog
from ..stores.leases import run_lease
from ..stores.events import (
    CandidateScored,
    Event,
    PromptCandidate,
    PromptTested,
    RunCompleted,
    RunFailed,
    RunPaused,
    RunResumed,
    Stage,
    StageCompleted,
    StageStarted,
    StepCompleted,
    StepProposed,
    StoredEvent,
    TransferSelected,
    prompt_id_of,
)
from ..stores.projection import RunState, ScoredPrompt, fold
from .config import RunConfig

#: Model specs whose calls go over the network: candidates are scored in parallel there.
_LOCAL_PREFIXES = ("smollm2", "hf:", "fake")


class RunHooks(Protocol):
    """What a front end (CLI progress, TUI) hears while a run runs. All optional."""

    def on_event(self, stored: StoredEvent, state: RunState) -> None: ...

    def on_examples(self, label: str, done: int, total: int) -> None: ...


class _Abandon(Exception):
    """Control flow: a pause was requested while a candidate was being scored."""


@dataclass(frozen=True, slots=True)
class _ScoreJob:
    candidate: PromptCandidate
    task: str
    rung: int
    n_examples: int
    new_calls: int


class Runner:
    """Executes (or continues) one run. One Runner per process per run.

    Args:
        log: a writable event log.
        run_id: the run; its events so far decide where execution continues.
        hooks: progress callbacks for a front end.
        pause_check: called between pieces of work; True pauses the run
            (e.g. ``tprompt pause`` from another terminal).
        max_cost: USD; once the run's paid calls reach it, the run pauses
            (reason ``budget``) and can be resumed with a higher budget.
    """

    def __init__(
        self,
        log: EventLog,
        run_id: str,
        *,
        hooks: RunHooks | None = None,
        pause_check: Callable[[], bool] | None = None,
        max_cost: float | None = None,
    ) -> None:
        self.log = log
        self.max_cost = max_cost
        self._pause_reason = "user"
        self.run_id = log.resolve(run_id)
        self.hooks = hooks
        self.state = log.state(self.run_id)
        if not self.state.config:
            raise UsageError(f"run {self.run_id} has no configuration event; it cannot be run")
        self.config = RunConfig(**self.state.config)
        self.weights = ObjectiveWeights(**self.config.weights)
        self._pause = threading.Event()
        self._pause_check = pause_check
        self._tasks: dict[str, Task] = {}
        self._examples: dict[tuple[str, str, int], list[Example]] = {}
        self.recorder = Recorder(log, run_id=self.run_id)
        self.proposer = get_model(self.config.proposer, base_url=self.config.base_url, concurrency=self.config.concurrency)
        self.scorer = get_model(self.config.scorer, base_url=self.config.base_url, concurrency=self.config.concurrency)
        for backend in (self.proposer, self.scorer):
            if backend.spec in self.config.prices:
                backend.price = tuple(self.config.prices[backend.spec])  # type: ignore[assignment]
        for name in self.stage_tasks("source") + self.stage_tasks("target"):
            self.task(name)  # unknown tasks fail here, before anything is written

    # -- shared helpers -----------------------------------------------------------------

    def task(self, name: str) -> Task:
        if name not in self._tasks:
            self._tasks[name] = load_task(name)
        return self._tasks[name]

    def stage_tasks(self, stage: Stage) -> list[str]:
        if stage == "source":
            return list(self.config.source_tasks) if self.config.transfer else []
        return [self.state.target_task or self.config.target_task]

    def examples(self, task: str, split: str, n: int) -> list[Example]:
        key = (task, split, n)
        if key not in self._examples:
            self._examples[key] = self.task(task).sample(n, split=split, seed=self.config.seed)
        return self._examples[key]

    @property
    def _scorer_is_remote(self) -> bool:
        return not self.config.scorer.startswith(_LOCAL_PREFIXES)

    def mode_for(self, task: Task) -> str:
        return resolve_mode(self.config.mode, task, self.scorer)

    def request_pause(self) -> None:
        """Ask the run to pause at the next safe point (thread- and signal-safe)."""
        self._pause.set()

    def pause_requested(self) -> bool:
        if self._pause.is_set():
            return True
        if self._pause_check is not None and self._pause_check():
            self._pause.set()
            return True
        if self.max_cost is not None and self.spent() >= self.max_cost:
            self._pause_reason = "budget"
            self._pause.set()
            return True
        return False

    def spent(self) -> float:
        """USD of this run's calls answered by a model (cache hits are free)."""
        return sum(row[5] or 0.0 for row in self.recorder.store.spend([self.run_id]))

    def emit(self, *events: Event) -> list[StoredEvent]:
        """Append ``events`` atomically after the last event this runner has seen."""
        expected = self.state.last_seq + 1
        ids = [f"{self.run_id}:{expected + i}:{ev.type}" for i, ev in enumerate(events)]
        stored = self.log.append(self.run_id, list(events), expected_seq=expected, event_ids=ids)
        self.state = fold(stored, state=self.state)  # one state copy per append, not per event
        if self.hooks is not None:
            for se in stored:
                self.hooks.on_event(se, self.state)
        return stored

    def _progress(self, label: str) -> Callable[[int, int], None]:
        def report(done: int, total: int) -> None:
            if self._pause.is_set():
                raise _Abandon()
            if self.hooks is not None:
                self.hooks.on_examples(label, done, total)

        return report

    def _evaluate(
        self, prompt: str, task_name: str, examples: Sequence[Example], *, label: str, step: str, agent: str = "scorer",
        recorder: Recorder | None = None, seq: int | None = None,
    ) -> Evaluation:
        task = self.task(task_name)
        return score_prompt(
            prompt,
            examples,
            task=task,
            model=self.scorer,
            recorder=recorder or self.recorder,
            mode=self.mode_for(task),  # type: ignore[arg-type]
            weights=self.weights,
            agent=agent,
            run_id=self.run_id,
            step=step,
            # Calls are filed under the event they lead to, so a fork at seq N
            # lists exactly the parent's calls up to N.
            seq=self.state.last_seq + 1 if seq is None else seq,
            progress=self._progress(label),
            # An API scorer takes `concurrency` requests at once; a batch must hold that many.
            batch_size=max(8, self.config.concurrency) if self._scorer_is_remote else 8,
        )

    # -- routing (the graph's conditional edges) ----------------------------------------

    def next_node(self) -> str:
        """Which node runs next, decided from the projection alone."""
        s = self.state
        if s.status in ("completed", "failed"):
            return "end"
        if self.pause_requested():
            return "pause"
        if self.config.transfer and "source" not in s.stages_completed:
            if s.stage != "source":
                return "start_source"
            return self._stage_next("source")
        if "target" not in s.stages_completed:
            if s.stage != "target":
                return "transfer"
            return self._stage_next("target")
        if any(role not in s.tested for role in self.test_roles()):
            return "test"
        return "finish"

    def _stage_next(self, stage: Stage) -> str:
        s = self.state
        if s.in_flight is not None:
            return "score" if self._next_score_jobs() else "evaluate"
        if s.stage_stopped or s.step >= self.config.stage_steps(stage) or self.budget_spent():
            return "evaluate"  # closes the stage
        return "propose"

    def budget_left(self) -> int | None:
        """Scorer calls on training examples still allowed (None: no cap)."""
        if self.config.scorer_budget is None:
            return None
        used = self.state.scorer_calls.get("source", 0) + self.state.scorer_calls.get("target", 0)
        return max(0, self.config.scorer_budget - used)

    def budget_spent(self) -> bool:
        """True when not even the cheapest scoring job fits in the budget left."""
        left = self.budget_left()
        if left is None:
            return False
        cheapest = self._rung_sizes()[0] if self.config.budget == "racing" else self.config.examples
        return left < cheapest

    def test_roles(self) -> list[str]:
        return ["original", "best_source", "best_target"] if self.config.transfer else ["original", "best_target"]

    # -- nodes ---------------------------------------------------------------------------------

    def start_source(self) -> None:
        original = self._original()
        self.emit(
            StageStarted(stage="source", tasks=self.stage_tasks("source")),
            StepProposed(stage="source", step=0, candidates=[original]),
        )

    def transfer(self) -> None:
        target = self.stage_tasks("target")[0]
        if self.config.transfer:
            seeds = select_transfer(self.state, self.config.top_k)
            self.emit(
                StageStarted(stage="target", tasks=[target]),
                TransferSelected(target_task=target, prompts=seeds),
                StepProposed(stage="target", step=0, candidates=seeds),
            )
        else:
            self.emit(
                StageStarted(stage="target", tasks=[target]),
                StepProposed(stage="target", step=0, candidates=[self._original()]),
            )

    def propose(self) -> None:
        s = self.state
        stage: Stage = s.stage  # type: ignore[assignment]
        step = s.step + 1
        tasks = self.stage_tasks(stage)
        task = self.task(tasks[0])
        exemplars = [
            format_exemplar(e.question, e.choices, e.answer, e.answer_text)
            for e in self.examples(tasks[0], "train", max(self.config.exemplars, 1))[: self.config.exemplars]
        ]
        history = [(h.text, h.objective) for h in s.history(stage)]
        transferred = [c.text for c in s.transferred] if stage == "target" else []
        description = task.description
        if len(tasks) > 1:
            description += "\n(The instruction is also used for: " + ", ".join(tasks[1:]) + ".)"
        meta = build_meta_prompt(
            task_description=description,
            exemplars=exemplars,
            history=history,
            transferred=transferred,
            source_tasks=s.source_tasks,
            history_size=self.config.history_size,
        )
        requests = [
            ChatRequest(
                messages=meta_messages(meta),
                temperature=self.config.proposer_temperature,
                max_tokens=self.config.proposer_max_tokens,
                seed=self.config.seed,
                sample_index=i,
            )
            for i in range(self.config.candidates)
        ]
        if self.hooks is not None:
            self.hooks.on_examples(f"{stage} step {step}: proposing", 0, len(requests))
        results = self.recorder.chat(
            self.proposer, requests, agent="proposer", run_id=self.run_id, step=f"{stage}:{step}", seq=s.last_seq + 1
        )
        known = list(s.prompts.values())
        kept, rejected = select_candidates([r.text for r in results], known_texts=known, max_chars=self.config.max_prompt_chars)
        self.emit(
            StepProposed(stage=stage, step=step, candidates=kept, rejected=rejected, call_ids=[r.call_id for r in results])
        )

    def score(self) -> None:
        jobs = self._next_score_jobs()
        if not jobs:
            return
        s = self.state
        stage: Stage = s.stage  # type: ignore[assignment]
        step = s.in_flight or 0
        parallel = self._scorer_is_remote and self.config.concurrency > 1
        if parallel:
            jobs = jobs[: self.config.concurrency]
            # One recorder (one connection) per worker thread.
            recorders = [Recorder(self.log, run_id=self.run_id) for _ in jobs]
            try:
                with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
                    # Job i's event will be appended at seq first + i: its calls are filed there.
                    first = s.last_seq + 1
                    futures = [
                        pool.submit(self._score_job, stage, step, job, rec, first + i)
                        for i, (job, rec) in enumerate(zip(jobs, recorders))
                    ]
                    # Appended in candidate order whatever order they finish in, so a
                    # re-run writes the same sequence of events.
                    for fut in futures:
                        self.emit(fut.result())
            finally:
                for rec in recorders:
                    rec.close()
        else:
            self.emit(self._score_job(stage, step, jobs[0], None, None))

    def _score_job(
        self, stage: Stage, step: int, job: _ScoreJob, recorder: Recorder | None, seq: int | None
    ) -> CandidateScored:
        examples = self.examples(job.task, "train", self.config.examples)[: job.n_examples]
        label = f"{stage} step {step}: {job.candidate.prompt_id} on {job.task}"
        if job.rung:
            label += f" (rung {job.rung})"
        ev = self._evaluate(
            job.candidate.text, job.task, examples, label=label, step=f"{stage}:{step}", recorder=recorder, seq=seq
        )
        return CandidateScored(
            stage=stage,
            step=step,
            prompt_id=job.candidate.prompt_id,
            text=job.candidate.text,
            task=job.task,
            split="train",
            n_examples=ev.n_examples,
            metrics=ev.metrics,
            objective=ev.objective,
            scorer_calls=job.new_calls,
            rung=job.rung,
        )

    def _rung_sizes(self) -> list[int]:
        n, rungs = self.config.examples, self.config.racing_rungs
        sizes = [max(1, math.ceil(n / 2 ** (rungs - 1 - r))) for r in range(rungs)]
        # Drop rungs that would not add examples (tiny N).
        out: list[int] = []
        for size in sizes:
            if not out or size > out[-1]:
                out.append(size)
        return out

    def _next_score_jobs(self) -> list[_ScoreJob]:
        """The scoring still to do in the step in flight, in a fixed order."""
        s = self.state
        stage: Stage = s.stage  # type: ignore[assignment]
        step = s.in_flight
        if step is None:
            return []
        tasks = self.stage_tasks(stage)
        done = {(x.prompt_id, x.task, x.rung): x for x in s.step_scores(stage, step)}
        cands = list(s.pending)
        racing = self.config.budget == "racing" and step > 0 and len(cands) > 1
        sizes = self._rung_sizes() if racing else [self.config.examples]
        alive = cands
        prev = 0
        for rung, size in enumerate(sizes):
            todo = [
                _ScoreJob(c, t, rung, size, size - prev)
                for c in alive
                for t in tasks
                if (c.prompt_id, t, rung) not in done
            ]
            if todo:
                left = self.budget_left()
                if left is not None:
                    # Only the jobs that fit: API scorers run several at once.
                    fit, spent = [], 0
                    for job in todo:
                        if spent + job.new_calls > left:
                            break
                        fit.append(job)
                        spent += job.new_calls
                    return fit  # empty: budget spent, the step closes with what is scored
                return todo
            if rung < len(sizes) - 1:
                ranked = sorted(
                    alive,
                    key=lambda c: -sum(done[(c.prompt_id, t, rung)].objective for t in tasks),
                )
                alive = ranked[: max(1, math.ceil(len(ranked) / 2))]
            prev = size
        return []

    def evaluate(self) -> None:
        """Close the step in flight (best, stop rule) and, when due, the stage (top-k)."""
        s = self.state
        stage: Stage = s.stage  # type: ignore[assignment]
        events: list[Event] = []
        if s.in_flight is not None:
            step = s.in_flight
            best = s.best(stage)
            stop = self._patience_exhausted(stage, step) or self.budget_spent()
            events.append(
                StepCompleted(
                    stage=stage,
                    step=step,
                    best_prompt_id=best.prompt_id if best else None,
                    best_objective=best.objective if best else None,
                    stop=stop,
                )
            )
            last_step = step >= self.config.stage_steps(stage) or stop
        else:
            last_step = True
        if last_step:
            # Ranking as the history will see it once the step closes.
            hist = s.history(stage)
            top = [h.prompt_id for h in reversed(hist)][: self.config.top_k]
            events.append(StageCompleted(stage=stage, top_k=top))
        self.emit(*events)

    def _patience_exhausted(self, stage: Stage, step: int) -> bool:
        patience = self.config.patience
        if patience is None or step < patience:
            return False
        scores = self.state.stage_scores(stage)

        def best_upto(k: int) -> float:
            vals = [x.objective for x in scores if x.step <= k]
            return max(vals) if vals else float("-inf")

        return best_upto(step) <= best_upto(step - patience)

    def test(self) -> None:
        """Evaluate one not-yet-tested prompt (original, best source, best target) on the test split."""
        s = self.state
        target = self.stage_tasks("target")[0]
        examples = self.examples(target, "test", self.config.test_examples)
        for role in self.test_roles():
            if role in s.tested:
                continue
            prompt = self._prompt_for_role(role)
            ev = self._evaluate(prompt.text, target, examples, label=f"test: {role}", step="test", agent="scorer")
            self.emit(
                PromptTested(
                    role=role,  # type: ignore[arg-type]
                    prompt_id=prompt.prompt_id,
                    text=prompt.text,
                    task=target,
                    split="test",
                    n_examples=ev.n_examples,
                    metrics=ev.metrics,
                    objective=ev.objective,
                    scorer_calls=ev.scorer_calls,
                )
            )
            return

    def _prompt_for_role(self, role: str) -> PromptCandidate:
        s = self.state
        if role == "original":
            return self._original()
        best: ScoredPrompt | None = s.best("source" if role == "best_source" else "target")
        if best is None:
            return self._original()
        return PromptCandidate(prompt_id=best.prompt_id, text=best.text)

    def finish(self) -> None:
        self.emit(RunCompleted())

    def pause(self) -> None:
        self.emit(RunPaused(reason=self._pause_reason))

    def _original(self) -> PromptCandidate:
        if self.state.original_prompt is not None:
            return self.state.original_prompt
        text = self.config.original_prompt
        return PromptCandidate(prompt_id=prompt_id_of(text), text=text, origin="original")

    # -- driving -------------------------------------------------------------------------------

    def run(self) -> RunState:
        """Run the graph until the run completes or pauses; returns the final state.

        Raises:
            TPromptError: a failure (recorded as ``run.failed`` first; resumable).
        """
        with run_lease(self.log, self.run_id):  # RunBusy if another live process runs it
            # Whoever held the run before may have appended since this runner folded it.
            self.state = self.log.state(self.run_id)
            return self._run()

    def _run(self) -> RunState:
        from .build import build_graph

        if self.state.status in ("paused", "failed") or (self.state.status == "running" and self.state.last_seq > 0):
            self.emit(RunResumed())
        graph = build_graph(self)
        try:
            graph.invoke({"seq": self.state.last_seq}, config={"recursion_limit": 1_000_000})
        except _Abandon:
            self.pause()
        except TPromptError as exc:
            self._fail(exc, exc.code, exc.is_retryable)
            raise
        except KeyboardInterrupt:
            self.pause()
        except Exception as exc:
            self._fail(exc, type(exc).__name__, False)
            raise
        return self.state

    def _fail(self, exc: BaseException, code: str, retryable: bool) -> None:
        try:
            self.log.append(
                self.run_id,
                [RunFailed(error=str(exc) or type(exc).__name__, code=code, retryable=retryable)],
            )
        except TPromptError:
            pass  # the store itself failed; the original error is what matters
        self.state = self.log.state(self.run_id)


NODES: tuple[str, ...] = ("start_source", "propose", "score", "evaluate", "transfer", "test", "finish", "pause")


def node_function(runner: Runner, name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    method = getattr(runner, name)

    def node(_: dict[str, Any]) -> dict[str, Any]:
        method()
        return {"seq": runner.state.last_seq}

    node.__name__ = name
    return node


__all__ = ("NODES", "RunHooks", "Runner", "node_function")
