"""Run state as a pure fold of the event log.

``apply(state, event) -> state`` never does I/O. ``fold`` folds many events in
linear time through a private mutable builder, then freezes the result once,
so projecting 100,000 events does not copy the state 100,000 times.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal, assert_never

from pydantic import BaseModel, ConfigDict, Field

from ..config import RunConfig
from .events import (
    STATUS_AFTER,
    Answered,
    CandidateAnswered,
    CandidateJudged,
    CandidateScored,
    Judged,
    Metrics,
    PromptCandidate,
    PromptTested,
    Role,
    RunCompleted,
    RunCreated,
    RunFailed,
    RunForked,
    RunPaused,
    RunResumed,
    Stage,
    StageCompleted,
    StageStarted,
    StepCompleted,
    StepProposed,
    StepRevised,
    StoredEvent,
    TestAnswered,
    TestJudged,
    TransferSelected,
)

Status = Literal["new", "created", "running", "paused", "completed", "failed"]
#: What ties an answer set to its judgement and its score: ``("test", role)`` for a held-out test,
#: ``(stage, step, prompt_id, task, rung)`` for a candidate (see :func:`answer_key`).
AnswerKey = tuple[Literal["test"], Role] | tuple[Stage, int, str, str, int]


@dataclass(frozen=True, slots=True)
class ScoredPrompt:
    """A prompt's score on one task at one step of a stage.

    A slotted dataclass, not a pydantic model: a run's projection holds one per
    ``candidate.scored`` event, built from an already validated event, and
    building 100,000 pydantic models would dominate the fold.
    """

    prompt_id: str
    text: str
    stage: Stage
    step: int
    task: str
    n_examples: int
    metrics: Metrics
    objective: float
    rung: int = 0
    #: racing: dropped before the step's last rung (set when the step closes)
    eliminated: bool = False
    seq: int = 0
    #: scorer calls this score cost (its event's ``scorer_calls``; cache hits are free)
    scorer_calls: int = 0

    def model_dump(self, mode: str = "python") -> dict[str, Any]:
        """The fields as a dict (``mode`` accepted for symmetry with the pydantic models)."""
        data = asdict(self)
        data["metrics"] = dict(self.metrics)
        return data

    def model_copy(self, *, update: dict[str, Any] | None = None) -> ScoredPrompt:
        return replace(self, **(update or {}))


def prompt_objectives(scores: Iterable[ScoredPrompt]) -> dict[str, tuple[float, ScoredPrompt]]:
    """The rule for how good a prompt is: prompt id -> (objective, its last score row at that rung).

    A prompt scored on several tasks (several source tasks) counts with the
    mean objective over its tasks at its deepest racing rung. Every "best
    prompt so far" in tprompt (the history the proposer sees, the TUI, the
    reports) is the maximum of this, ties going to the earlier prompt.
    """
    by_prompt: dict[str, list[ScoredPrompt]] = {}
    for s in scores:
        by_prompt.setdefault(s.prompt_id, []).append(s)
    out: dict[str, tuple[float, ScoredPrompt]] = {}
    for pid, items in by_prompt.items():
        deepest = max(i.rung for i in items)
        at = [i for i in items if i.rung == deepest]
        out[pid] = (sum(i.objective for i in at) / len(at), at[-1])
    return out


class TestResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    role: str
    prompt_id: str
    text: str
    task: str
    n_examples: int
    metrics: Metrics
    objective: float
    seq: int = 0
    #: metric name -> examples it was undefined on (see :class:`PromptTested`)
    undefined: dict[str, int] = {}


#: What a test result takes from its prompt.tested event (all but the seq, which is the event's).
_TESTED = tuple(name for name in TestResult.model_fields if name != "seq")


class RunState(BaseModel):
    """Everything known about a run after some prefix of its events."""

    model_config = ConfigDict(frozen=True)

    run_id: str = ""
    status: Status = "new"
    last_seq: int = 0
    event_count: int = 0
    #: the run's configuration (None until its ``run.created``)
    config: RunConfig | None = None
    name: str | None = None
    source_tasks: tuple[str, ...] = ()
    target_task: str | None = None
    original_prompt: PromptCandidate | None = None
    parent_run_id: str | None = None
    parent_seq: int | None = None
    from_prompt_id: str | None = None
    stage: Stage | None = None
    stages_completed: tuple[Stage, ...] = ()
    #: last step completed in the current stage (-1 before step 0, the seed prompts)
    step: int = -1
    #: the step proposed and not yet completed, if any
    in_flight: int | None = None
    #: the evaluator's stop rule ended the current stage early
    stage_stopped: bool = False
    #: candidates proposed in the step in flight, not yet all scored
    pending: tuple[PromptCandidate, ...] = ()
    #: who revised the step in flight's candidates so far (``step.revised`` ``by``), in order
    revisions: tuple[str, ...] = ()
    #: the scorer's answers not yet turned into scores by the evaluator
    unevaluated: tuple[Answered, ...] = ()
    #: the judge's judgements of answers not yet evaluated (``candidate.judged``/``test.judged``, same answer key)
    judged: tuple[Judged, ...] = ()
    #: judgements the judge made over the run, and how many of them could not be parsed
    judgements: int = 0
    judge_unparsed: int = 0
    scores: tuple[ScoredPrompt, ...] = ()
    prompts: dict[str, str] = Field(default_factory=dict)
    top_k: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    #: the scoring mode (generate, logprob) of each task's answers, as its last ``candidate.answered`` says
    modes: dict[str, str] = Field(default_factory=dict)
    transferred: tuple[PromptCandidate, ...] = ()
    tested: dict[str, TestResult] = Field(default_factory=dict)
    scorer_calls: dict[str, int] = Field(default_factory=dict)
    proposer_calls: dict[str, int] = Field(default_factory=dict)
    error: str | None = None

    # -- derived views (pure) --------------------------------------------------

    def judgement_of(self, answered: Answered) -> Judged | None:
        """The judge's judgements of ``answered`` (None: not judged yet)."""
        key = answer_key(answered)
        return next((j for j in self.judged if answer_key(j) == key), None)

    def unjudged(self) -> list[Answered]:
        """The answers awaiting evaluation that the judge has not judged yet, in order."""
        keys = {answer_key(j) for j in self.judged}
        return [a for a in self.unevaluated if answer_key(a) not in keys]

    def step_scores(self, stage: Stage, step: int) -> list[ScoredPrompt]:
        return [s for s in self.scores if s.stage == stage and s.step == step]

    def stage_scores(self, stage: Stage, *, include_eliminated: bool = True) -> list[ScoredPrompt]:
        return [s for s in self.scores if s.stage == stage and (include_eliminated or not s.eliminated)]

    def history(self, stage: Stage) -> list[ScoredPrompt]:
        """Best full score per prompt in ``stage``, sorted ascending (best last).

        A prompt scored on several tasks (several source tasks) counts with the
        mean objective over its tasks at its deepest rung.
        """
        ranked = prompt_objectives(s for s in self.scores if s.stage == stage)
        best = [row.model_copy(update={"objective": mean}) for mean, row in ranked.values()]
        best.sort(key=lambda s: (s.objective, -s.seq))
        return best

    def step_untouched(self) -> bool:
        """No candidate of the step in flight has been answered or scored yet."""
        if self.unevaluated:
            return False
        return self.stage is None or self.in_flight is None or not self.step_scores(self.stage, self.in_flight)

    def awaiting_review(self) -> bool:
        """A person must review the step in flight's candidates before they are scored (config ``review``)."""
        return (
            self.config is not None and self.config.review and (self.in_flight or 0) > 0
            and "review" not in self.revisions and self.step_untouched()
        )

    def best(self, stage: Stage) -> ScoredPrompt | None:
        hist = self.history(stage)
        return hist[-1] if hist else None

    def best_overall(self) -> ScoredPrompt | None:
        """The prompt ``tprompt export`` takes by default: the target stage's best, else the source's (None: none)."""
        return self.best("target") or self.best("source")

    @property
    def best_prompt(self) -> str | None:
        """The text of :meth:`best_overall` (its provenance: :func:`tprompt.export.export_prompt`)."""
        found = self.best_overall()
        return found.text if found else None


class _Builder:
    """Mutable twin of :class:`RunState` used while folding."""

    def __init__(self, state: RunState) -> None:
        self.data: dict[str, Any] = dict(state.__dict__)
        self.scores = list(state.scores)
        self.prompts = dict(state.prompts)
        self.top_k = dict(state.top_k)
        self.modes = dict(state.modes)
        self.tested = dict(state.tested)
        self.scorer_calls = dict(state.scorer_calls)
        self.proposer_calls = dict(state.proposer_calls)
        self.pending = list(state.pending)
        self.unevaluated = list(state.unevaluated)
        self.judged = list(state.judged)
        self.pending_scored: set[str] = set()

    def freeze(self) -> RunState:
        data = dict(self.data)
        data.update(
            scores=tuple(self.scores),
            prompts=self.prompts,
            top_k=self.top_k,
            modes=self.modes,
            tested=self.tested,
            scorer_calls=self.scorer_calls,
            proposer_calls=self.proposer_calls,
            pending=tuple(self.pending),
            unevaluated=tuple(self.unevaluated),
            judged=tuple(self.judged),
        )
        return RunState.model_construct(**data)


def _created(b: _Builder, ev: RunCreated) -> None:
    b.data.update(
        status=STATUS_AFTER[RunCreated],
        config=ev.config,
        name=ev.name,
        source_tasks=tuple(ev.source_tasks),
        target_task=ev.target_task,
        original_prompt=ev.original_prompt,
    )
    b.prompts[ev.original_prompt.prompt_id] = ev.original_prompt.text


def _forked(b: _Builder, ev: RunForked) -> None:
    b.data.update(
        status=STATUS_AFTER[RunForked],
        config=ev.config,
        target_task=ev.target_task,
        parent_run_id=ev.parent_run_id,
        parent_seq=ev.parent_seq,
        from_prompt_id=ev.from_prompt_id,
        error=None,
    )
    b.tested = {}


def _stage_started(b: _Builder, ev: StageStarted) -> None:
    b.data.update(status=STATUS_AFTER[StageStarted], stage=ev.stage, step=-1, in_flight=None, stage_stopped=False)
    b.pending = []


def _proposed(b: _Builder, ev: StepProposed) -> None:
    b.pending = list(ev.candidates)
    b.data.update(in_flight=ev.step, revisions=())
    b.proposer_calls[ev.stage] = b.proposer_calls.get(ev.stage, 0) + len(ev.call_ids)
    for c in ev.candidates:
        b.prompts[c.prompt_id] = c.text


def _revised(b: _Builder, ev: StepRevised) -> None:
    b.pending = list(ev.candidates)
    b.data["revisions"] = tuple(b.data["revisions"]) + (ev.by,)
    b.proposer_calls[ev.stage] = b.proposer_calls.get(ev.stage, 0) + len(ev.call_ids)
    for c in ev.candidates:
        b.prompts[c.prompt_id] = c.text


def _evaluated(b: _Builder, key: AnswerKey) -> None:
    """Drop the answers the evaluator has just scored (key: what identifies them)."""
    if b.unevaluated:
        b.unevaluated = [a for a in b.unevaluated if answer_key(a) != key]
    if b.judged:
        b.judged = [j for j in b.judged if answer_key(j) != key]


def _judged(b: _Builder, ev: Judged) -> None:
    key = answer_key(ev)
    b.judged = [j for j in b.judged if answer_key(j) != key] + [ev]
    b.data["judgements"] = b.data["judgements"] + len(ev.judgements)
    b.data["judge_unparsed"] = b.data["judge_unparsed"] + ev.unparsed


def answer_key(a: Answered | Judged | CandidateScored | PromptTested) -> AnswerKey:
    """What ties an answer set (``candidate.answered``, ``test.answered``) to its judgement and its score."""
    if isinstance(a, (TestAnswered, TestJudged, PromptTested)):
        return ("test", a.role)
    return (a.stage, a.step, a.prompt_id, a.task, a.rung)


def _scored(b: _Builder, event: CandidateScored, seq: int) -> None:
    # The hottest handler (one call per candidate score): read the event's
    # fields once from its __dict__ and build the row positionally.
    ev = event.__dict__
    b.scores.append(
        _new_scored(
            ev["prompt_id"], ev["text"], ev["stage"], ev["step"], ev["task"], ev["n_examples"],
            ev["metrics"], ev["objective"], ev["rung"], False, seq, ev["scorer_calls"],
        )
    )
    b.prompts[ev["prompt_id"]] = ev["text"]
    stage = ev["stage"]
    b.scorer_calls[stage] = b.scorer_calls.get(stage, 0) + ev["scorer_calls"]
    _evaluated(b, (stage, ev["step"], ev["prompt_id"], ev["task"], ev["rung"]))


_new_scored = ScoredPrompt


def _step_completed(b: _Builder, ev: StepCompleted) -> None:
    b.data.update(step=ev.step, in_flight=None)
    if ev.stop:
        b.data["stage_stopped"] = True
    b.pending = []
    _mark_eliminated(b, ev.stage, ev.step)


def _mark_eliminated(b: _Builder, stage: str, step: int) -> None:
    # Racing: once a step closes, a candidate whose deepest rung is below the
    # step's deepest rung was eliminated; its rows say so from here on.
    rows = []
    for i in range(len(b.scores) - 1, -1, -1):
        s = b.scores[i]
        if s.stage == stage and s.step == step:
            rows.append(i)
        elif s.stage == stage and s.step < step:
            break
    if not rows:
        return
    top = max(b.scores[i].rung for i in rows)
    if top == 0:
        return
    deepest: dict[str, int] = {}
    for i in rows:
        s = b.scores[i]
        deepest[s.prompt_id] = max(deepest.get(s.prompt_id, 0), s.rung)
    for i in rows:
        s = b.scores[i]
        if deepest[s.prompt_id] < top:
            b.scores[i] = replace(s, eliminated=True)


def _stage_completed(b: _Builder, ev: StageCompleted) -> None:
    b.top_k[ev.stage] = tuple(ev.top_k)
    done = tuple(b.data["stages_completed"])
    if ev.stage not in done:
        b.data["stages_completed"] = done + (ev.stage,)
    b.pending = []


def _transfer(b: _Builder, ev: TransferSelected) -> None:
    b.data["transferred"] = tuple(ev.prompts)
    b.data["target_task"] = ev.target_task
    for c in ev.prompts:
        b.prompts[c.prompt_id] = c.text


def _tested(b: _Builder, ev: PromptTested, seq: int) -> None:
    b.tested[ev.role] = TestResult(seq=seq, **{name: getattr(ev, name) for name in _TESTED})
    b.scorer_calls["test"] = b.scorer_calls.get("test", 0) + ev.scorer_calls
    _evaluated(b, ("test", ev.role))


def _apply(b: _Builder, se: StoredEvent) -> None:
    """Fold one event into the builder; every event class has its case (mypy checks the match is exhaustive)."""
    ev = se.event
    # The most frequent events first: a case is an isinstance check.
    match ev:
        case CandidateScored():
            _scored(b, ev, se.seq)
        case CandidateAnswered() | TestAnswered():
            b.unevaluated.append(ev)
            b.modes[ev.task] = ev.mode
        case CandidateJudged() | TestJudged():
            _judged(b, ev)
        case StepProposed():
            _proposed(b, ev)
        case StepRevised():
            _revised(b, ev)
        case StepCompleted():
            _step_completed(b, ev)
        case PromptTested():
            _tested(b, ev, se.seq)
        case RunCreated():
            _created(b, ev)
        case RunForked():
            _forked(b, ev)
        case StageStarted():
            _stage_started(b, ev)
        case StageCompleted():
            _stage_completed(b, ev)
        case TransferSelected():
            _transfer(b, ev)
        case RunPaused():
            b.data["status"] = STATUS_AFTER[RunPaused]
        case RunResumed():
            b.data.update(status=STATUS_AFTER[RunResumed], error=None)
        case RunCompleted():
            b.data["status"] = STATUS_AFTER[RunCompleted]
        case RunFailed():
            b.data.update(status=STATUS_AFTER[RunFailed], error=ev.error)
        case _:
            assert_never(ev)


def fold(events: Iterable[StoredEvent], *, run_id: str = "", state: RunState | None = None) -> RunState:
    """Fold ``events`` (in seq order) onto ``state`` (a fresh one by default)."""
    b = _Builder(state if state is not None else RunState(run_id=run_id))
    if run_id:
        b.data["run_id"] = run_id
    count = b.data["event_count"]
    last = b.data["last_seq"]
    for se in events:
        _apply(b, se)
        count += 1
        last = se.seq
    b.data["event_count"] = count
    b.data["last_seq"] = last
    return b.freeze()


def apply(state: RunState, event: StoredEvent) -> RunState:
    """The state after one more event. Pure: ``state`` is not changed."""
    return fold([event], state=state)


__all__ = ("AnswerKey", "RunState", "ScoredPrompt", "TestResult", "answer_key", "apply", "fold", "prompt_objectives")
