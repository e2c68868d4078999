"""The event types of a tprompt run.

Events are frozen pydantic models named in the past tense, with a ``type``
literal as discriminator. What a stored event looks like on disk: one row of
``events`` (run_id, seq, event_id, type, schema_version, payload JSON,
created_at). The payload is ``model_dump_json()`` of the event, ``type``
included. Old payloads are brought up to date by :data:`UPCASTERS` when read.

Code that reads events dispatches on their class (``match se.event: case
CandidateScored(): ...``), never on the ``type`` string: that is the stored
discriminator, and :data:`EVENT_TYPES` maps it to the class once, when a row is
decoded.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, Union, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    model_serializer,
    model_validator,
)

from ..config import RunConfig
from ..metric_specs import METRIC_NAMES  # the metric keys of events, re-exported here

Stage = Literal["source", "target"]
Role = Literal["original", "best_source", "best_target"]
Metrics = dict[str, float | None]

#: The prompts a finished run tests on the target's held-out split, in order.
ROLES: tuple[Role, ...] = ("original", "best_source", "best_target")


def tested_roles(transfer: bool) -> list[Role]:
    """The roles a run tests: all three with transfer, no best source prompt without (the OPRO baseline)."""
    return list(ROLES) if transfer else ["original", "best_target"]


def prompt_id_of(text: str) -> str:
    """Content address of a prompt: the same text always has the same id."""
    return "p-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]


class _Frozen(BaseModel):
    # NaN/inf would be written as JSON null and make the run unreadable: refuse
    # them when the event is built (undefined metrics are None).
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class _OmitNone(_Frozen):
    """An event part with fields added after logs were written: each is left out of the payload while None,
    so every event written without them keeps the bytes it always had (and old payloads read as None)."""

    _omit_none: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _without_none(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            for key in self._omit_none:
                if data.get(key, 0) is None:
                    del data[key]
        return data


class PromptCandidate(_OmitNone):
    """A candidate prompt. A program's candidate (``tprompt run --program``) is a set of named prompts:
    ``prompts`` holds the whole set, ``text`` its canonical JSON (:func:`prompt_set_text`, so the id is
    the set's content address) and ``changed`` the one prompt this candidate rewrote (None: the original
    set, or a set carried over whole)."""

    _omit_none: ClassVar[tuple[str, ...]] = ("prompts", "changed")
    prompt_id: str
    text: str
    origin: Literal["original", "proposed", "transferred", "forked", "edited"] = "proposed"
    prompts: dict[str, str] | None = None
    changed: str | None = None

    @model_validator(mode="after")
    def _set_is_text(self) -> PromptCandidate:
        if self.prompts is not None and self.text != prompt_set_text(self.prompts):
            raise ValueError("a program candidate's text is the JSON of its prompts (prompt_set_text)")
        if self.changed is not None and (self.prompts is None or self.changed not in self.prompts):
            raise ValueError(f"changed names prompt {self.changed!r}, which is not in the candidate's prompts")
        return self


def prompt_set_text(prompts: dict[str, str]) -> str:
    """The text of a program's candidate: its named prompts as JSON, in the program's order."""
    return json.dumps(dict(prompts), ensure_ascii=False)


def program_candidate(prompts: dict[str, str], *, origin: Literal["original", "proposed", "transferred", "forked",
                      "edited"] = "proposed", changed: str | None = None) -> PromptCandidate:
    """A program's candidate holding the set ``prompts`` (its id the set's content address)."""
    text = prompt_set_text(prompts)
    return PromptCandidate(prompt_id=prompt_id_of(text), text=text, origin=origin, prompts=dict(prompts),
                           changed=changed)


class RejectedCandidate(_Frozen):
    text: str
    reason: str


class Event(_Frozen):
    """Base of every event. ``schema_version`` is the payload shape's version."""

    schema_version: ClassVar[int] = 1
    type: str


class RunCreated(Event):
    """First event of a run. ``config`` is stored as a JSON object of every :class:`RunConfig` key
    (the shape it always had); keys added to RunConfig after a run was written read as their defaults."""

    type: Literal["run.created"] = "run.created"
    config: RunConfig
    source_tasks: list[str]
    target_task: str
    original_prompt: PromptCandidate
    name: str | None = None


class RunForked(Event):
    """First event of a fork; everything before it is the parent's, read through."""

    type: Literal["run.forked"] = "run.forked"
    parent_run_id: str
    parent_seq: int
    from_prompt_id: str | None = None
    config: RunConfig
    target_task: str


class StageStarted(Event):
    type: Literal["stage.started"] = "stage.started"
    stage: Stage
    tasks: list[str]


class StepProposed(Event, _OmitNone):
    """The proposer's candidates for one step (already de-duplicated and checked)."""

    _omit_none: ClassVar[tuple[str, ...]] = ("changed_because",)
    type: Literal["step.proposed"] = "step.proposed"
    stage: Stage
    step: int
    candidates: list[PromptCandidate]
    rejected: list[RejectedCandidate] = Field(default_factory=list)
    call_ids: list[str] = Field(default_factory=list)
    #: reflective style: the candidate the proposer was asked to improve
    parent_id: str | None = None
    #: reflective style: the parent's training answers shown to the proposer, as (task, example id), in order
    shown: list[tuple[str, str]] = Field(default_factory=list)
    #: a program's reflective step: why its candidates rewrite the prompt they name (``changed``)
    changed_because: str | None = None


class StepRevised(Event):
    """The step in flight's candidates replaced before scoring: by a node (a critic) or a person (review).

    ``by`` names who revised them (a node name, or ``review`` for a person at
    the review step); ``call_ids`` are the model calls the revision made.
    """

    type: Literal["step.revised"] = "step.revised"
    stage: Stage
    step: int
    by: str
    candidates: list[PromptCandidate]
    call_ids: list[str] = Field(default_factory=list)


class Answer(_OmitNone):
    """One scorer answer as the evaluator needs it (the raw text is in the call's transcript).

    A program's answer (``--program``) also holds the program's ``output`` (the answer it returned, which
    metrics score), or, when it raised, ``error`` (the exception's one-line summary; the answer is wrong).
    """

    _omit_none: ClassVar[tuple[str, ...]] = ("output", "error", "prompts")

    example_id: str
    parsed: str | None
    #: verbalized confidence (generate mode) or the chosen option's probability (logprob mode)
    confidence: float
    followed_format: bool
    correct: bool
    call_id: str | None = None
    output: str | None = None
    error: str | None = None
    #: a program's answer: the names of its prompts the row's calls carried, in the program's order
    prompts: list[str] | None = None


class CandidateAnswered(Event):
    """The scorer agent's answers for one candidate on one task's training questions: what the evaluator scores.

    Version 2: training answers only (the held-out test answers are :class:`TestAnswered`);
    version 1 held both, told apart by ``split`` (see :func:`_split_answered`).
    """

    schema_version: ClassVar[int] = 2
    type: Literal["candidate.answered"] = "candidate.answered"
    stage: Stage
    step: int
    prompt_id: str
    text: str
    task: str
    split: Literal["train"] = "train"
    #: racing (successive halving) rung; 0 for full scoring
    rung: int = 0
    mode: Literal["generate", "logprob"] = "generate"
    #: scorer calls this adds to the run's count (racing: only the rung's new examples)
    scorer_calls: int = 0
    answers: list[Answer]


class TestAnswered(Event):
    """The scorer agent's answers on the target task's held-out test questions under the prompt of one role."""

    __test__ = False  # not a pytest test class, whatever its name
    type: Literal["test.answered"] = "test.answered"
    role: Role
    prompt_id: str
    text: str
    task: str
    split: Literal["test"] = "test"
    mode: Literal["generate", "logprob"] = "generate"
    #: scorer calls this adds to the run's count (0 when the run tested the same prompt on the task already:
    #: the same requests, cache hits)
    scorer_calls: int = 0
    answers: list[Answer]


class Judgement(_Frozen):
    """The judge's verdict on one answer for one criterion.

    ``score`` is on the rubric's scale; None when the judge's reply could not
    be parsed for this criterion (``error`` says why), never a silent 0.
    """

    example_id: str
    criterion: str
    score: float | None
    rationale: str = ""
    error: str | None = None
    call_id: str | None = None


class CandidateJudged(Event):
    """The LLM judge's judgements of one :class:`CandidateAnswered` (same answer key), per answer and criterion.

    ``rubric`` is the rubric's ref (``rubric.default@v1``) and ``judge`` the
    judge's model spec; ``judge_calls`` the requests made (cache hits included).
    Version 2: training answers only (test answers' are :class:`TestJudged`).
    """

    schema_version: ClassVar[int] = 2
    type: Literal["candidate.judged"] = "candidate.judged"
    stage: Stage
    step: int
    prompt_id: str
    task: str
    split: Literal["train"] = "train"
    rung: int = 0
    judge: str
    rubric: str
    judge_calls: int = 0
    judgements: list[Judgement]

    @property
    def unparsed(self) -> int:
        """Judgements whose reply could not be parsed."""
        return sum(j.score is None for j in self.judgements)


class TestJudged(Event):
    """The LLM judge's judgements of one :class:`TestAnswered` (the same role's test answers)."""

    __test__ = False  # not a pytest test class, whatever its name
    type: Literal["test.judged"] = "test.judged"
    role: Role
    prompt_id: str
    task: str
    split: Literal["test"] = "test"
    judge: str
    rubric: str
    judge_calls: int = 0
    judgements: list[Judgement]

    @property
    def unparsed(self) -> int:
        """Judgements whose reply could not be parsed."""
        return sum(j.score is None for j in self.judgements)


#: a set of scorer answers the evaluator (and the judge) works on: training or test
Answered = CandidateAnswered | TestAnswered
#: the judge's judgements of an answer set: training or test
Judged = CandidateJudged | TestJudged


class CandidateScored(Event):
    """One candidate's metrics on one task (one rung of racing, or the full set)."""

    type: Literal["candidate.scored"] = "candidate.scored"
    stage: Stage
    step: int
    prompt_id: str
    text: str
    task: str
    split: Literal["train"] = "train"
    n_examples: int
    metrics: Metrics
    objective: float
    scorer_calls: int = 0
    #: metric name -> examples it was undefined on (a plug-in that raised or returned a bad value)
    undefined: dict[str, int] = Field(default_factory=dict)
    #: metric name -> example id -> value, for the per-example metrics (the Pareto pool's keys)
    example_values: dict[str, dict[str, float]] = Field(default_factory=dict)
    #: metric name -> example id -> the feedback text a metric returned with its value
    feedback: dict[str, dict[str, str]] = Field(default_factory=dict)
    #: racing (successive halving) rung; 0 for full scoring
    rung: int = 0


class StepCompleted(Event):
    type: Literal["step.completed"] = "step.completed"
    stage: Stage
    step: int
    best_prompt_id: str | None
    best_objective: float | None
    stop: bool = False


class StageCompleted(Event):
    type: Literal["stage.completed"] = "stage.completed"
    stage: Stage
    top_k: list[str]


class TransferSelected(Event):
    """The transfer agent's pick: the top-k source prompts seeding the target stage."""

    type: Literal["transfer.selected"] = "transfer.selected"
    target_task: str
    prompts: list[PromptCandidate]


class PromptTested(Event):
    """A prompt evaluated on the target task's held-out test split."""

    type: Literal["prompt.tested"] = "prompt.tested"
    role: Role
    prompt_id: str
    text: str
    task: str
    split: Literal["test"] = "test"
    n_examples: int
    metrics: Metrics
    objective: float
    scorer_calls: int = 0
    #: metric name -> examples it was undefined on (a plug-in that raised or returned a bad value)
    undefined: dict[str, int] = Field(default_factory=dict)
    #: metric name -> example id -> value, for the per-example metrics (the Pareto pool's keys)
    example_values: dict[str, dict[str, float]] = Field(default_factory=dict)
    #: metric name -> example id -> the feedback text a metric returned with its value
    feedback: dict[str, dict[str, str]] = Field(default_factory=dict)


class RunPaused(Event):
    type: Literal["run.paused"] = "run.paused"
    reason: str = "user"


class RunResumed(Event):
    type: Literal["run.resumed"] = "run.resumed"


class RunCompleted(Event):
    type: Literal["run.completed"] = "run.completed"


class RunFailed(Event):
    type: Literal["run.failed"] = "run.failed"
    error: str
    code: str = "error"
    retryable: bool = False


AnyEvent = Annotated[
    Union[
        RunCreated,
        RunForked,
        StageStarted,
        StepProposed,
        StepRevised,
        CandidateAnswered,
        TestAnswered,
        CandidateJudged,
        TestJudged,
        CandidateScored,
        StepCompleted,
        StageCompleted,
        TransferSelected,
        PromptTested,
        RunPaused,
        RunResumed,
        RunCompleted,
        RunFailed,
    ],
    Field(discriminator="type"),
]

EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(AnyEvent)

#: every event class, in the union's order
EVENT_CLASSES: tuple[type[Event], ...] = get_args(get_args(AnyEvent)[0])


#: The run status each of these event classes leaves a run in (the others keep it): the
#: ``runs.status`` column the store keeps and the fold's ``RunState.status`` both read this.
STATUS_AFTER: dict[type[Event], str] = {
    RunCreated: "created",
    RunForked: "created",
    StageStarted: "running",
    RunResumed: "running",
    RunPaused: "paused",
    RunCompleted: "completed",
    RunFailed: "failed",
}


def event_key(run_id: str, seq: int, event: Event) -> str:
    """The idempotency key of ``event`` appended to ``run_id`` at ``seq``: the same event at the same
    seq has the same key, so a re-executed step writes nothing twice."""
    return f"{run_id}:{seq}:{event.type}"


def type_of(cls: type[Event]) -> str:
    """The ``type`` literal an event class is stored under."""
    default = cls.model_fields["type"].default
    assert isinstance(default, str)
    return default


#: stored type literal -> event class (decoding a row; nothing else should look events up by string)
EVENT_TYPES: dict[str, type[Event]] = {type_of(cls): cls for cls in EVENT_CLASSES}



def _split_answered(data: dict[str, Any]) -> dict[str, Any]:
    """A version-1 ``candidate.answered``/``candidate.judged``: training, or a test set (then ``test.*``).

    Version 1 held both facts in one class, with ``split`` saying which: test
    payloads carry the role (no stage, step or rung), training payloads the
    stage, step and rung (no role).
    """
    data = dict(data)
    role = data.pop("role", None)
    if data.get("split", "train") == "test":
        for key in ("stage", "step", "rung"):
            data.pop(key, None)
        data["type"] = "test." + data["type"].split(".", 1)[1]
        data["role"] = role
    return data


#: (type, stored schema_version) -> function bringing that payload one version up
#: (it may change the payload's ``type``: one stored class became two).
UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {
    ("candidate.answered", 1): _split_answered,
    ("candidate.judged", 1): _split_answered,
}


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as read back from the log, with its envelope.

    A slotted dataclass, not a pydantic model: one is made per event read
    (100,000 for a long run's projection) from an event already validated.
    Dispatch on ``event``'s class; ``type`` is the stored type string, for display.
    """

    run_id: str
    seq: int
    event_id: str
    schema_version: int
    created_at: datetime
    event: AnyEvent

    @property
    def type(self) -> str:
        """The event's stored type literal (``candidate.scored``), derived from the event."""
        return self.event.type

    def model_dump(self, mode: Literal["python", "json"] = "python") -> dict[str, Any]:
        """The envelope and the event as plain data (the shape the pydantic model used to dump)."""
        return {
            "run_id": self.run_id,
            "seq": self.seq,
            "event_id": self.event_id,
            "type": self.type,
            "schema_version": self.schema_version,
            "created_at": self.created_at.isoformat() if mode == "json" else self.created_at,
            "event": self.event.model_dump(mode=mode),
        }


__all__ = (
    "METRIC_NAMES",
    "ROLES",
    "tested_roles",
    "Answer",
    "Answered",
    "AnyEvent",
    "CandidateAnswered",
    "CandidateJudged",
    "CandidateScored",
    "EVENT_ADAPTER",
    "EVENT_CLASSES",
    "EVENT_TYPES",
    "Event",
    "Judged",
    "Judgement",
    "Metrics",
    "PromptCandidate",
    "PromptTested",
    "RejectedCandidate",
    "Role",
    "RunCompleted",
    "RunCreated",
    "RunFailed",
    "RunForked",
    "RunPaused",
    "RunResumed",
    "STATUS_AFTER",
    "Stage",
    "StageCompleted",
    "StageStarted",
    "StepCompleted",
    "StepProposed",
    "StepRevised",
    "StoredEvent",
    "TestAnswered",
    "TestJudged",
    "TransferSelected",
    "UPCASTERS",
    "event_key",
    "program_candidate",
    "prompt_id_of",
    "prompt_set_text",
    "type_of",
)
