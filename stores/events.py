"""The event types of a tprompt run.

Events are frozen pydantic models named in the past tense, with a ``type``
literal as discriminator. What a stored event looks like on disk: one row of
``events`` (run_id, seq, event_id, type, schema_version, payload JSON,
created_at). The payload is ``model_dump_json()`` of the event, ``type``
included. Old payloads are brought up to date by :data:`UPCASTERS` when read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from ..metric_specs import METRIC_NAMES  # the metric keys of events, re-exported here

Stage = Literal["source", "target"]
Role = Literal["original", "best_source", "best_target"]
Metrics = dict[str, float | None]

#: The prompts a finished run tests on the target's held-out split, in order.
ROLES: tuple[str, ...] = ("original", "best_source", "best_target")


def tested_roles(transfer: bool) -> list[str]:
    """The roles a run tests: all three with transfer, no best source prompt without (the OPRO baseline)."""
    return list(ROLES) if transfer else ["original", "best_target"]


def prompt_id_of(text: str) -> str:
    """Content address of a prompt: the same text always has the same id."""
    return "p-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]


class _Frozen(BaseModel):
    # NaN/inf would be written as JSON null and make the run unreadable: refuse
    # them when the event is built (undefined metrics are None).
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class PromptCandidate(_Frozen):
    prompt_id: str
    text: str
    origin: Literal["original", "proposed", "transferred", "forked", "edited"] = "proposed"


class RejectedCandidate(_Frozen):
    text: str
    reason: str


class Event(_Frozen):
    """Base of every event. ``schema_version`` is the payload shape's version."""

    schema_version: ClassVar[int] = 1
    type: str


class RunCreated(Event):
    type: Literal["run.created"] = "run.created"
    config: dict[str, Any]
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
    config: dict[str, Any]
    target_task: str


class StageStarted(Event):
    type: Literal["stage.started"] = "stage.started"
    stage: Stage
    tasks: list[str]


class StepProposed(Event):
    """The proposer's candidates for one step (already de-duplicated and checked)."""

    type: Literal["step.proposed"] = "step.proposed"
    stage: Stage
    step: int
    candidates: list[PromptCandidate]
    rejected: list[RejectedCandidate] = Field(default_factory=list)
    call_ids: list[str] = Field(default_factory=list)


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


class Answer(_Frozen):
    """One scorer answer as the evaluator needs it (the raw text is in the call's transcript)."""

    example_id: str
    parsed: str | None
    #: verbalized confidence (generate mode) or the chosen option's probability (logprob mode)
    confidence: float
    followed_format: bool
    correct: bool
    call_id: str | None = None


class CandidateAnswered(Event):
    """The scorer agent's answers for one prompt on one task: what the evaluator scores.

    Training answers carry the stage, step and racing rung; test answers
    (split ``test``) carry the role of the prompt tested instead.
    """

    type: Literal["candidate.answered"] = "candidate.answered"
    stage: Stage | None = None
    step: int | None = None
    role: Role | None = None
    prompt_id: str
    text: str
    task: str
    split: str = "train"
    rung: int = 0
    mode: Literal["generate", "logprob"] = "generate"
    #: scorer calls this adds to the run's count (racing: only the rung's new examples)
    scorer_calls: int = 0
    answers: list[Answer]


class CandidateScored(Event):
    """One candidate's metrics on one task (one rung of racing, or the full set)."""

    type: Literal["candidate.scored"] = "candidate.scored"
    stage: Stage
    step: int
    prompt_id: str
    text: str
    task: str
    split: str = "train"
    n_examples: int
    metrics: Metrics
    objective: float
    scorer_calls: int = 0
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
    split: str = "test"
    n_examples: int
    metrics: Metrics
    objective: float
    scorer_calls: int = 0


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

#: type literal -> event class
EVENT_TYPES: dict[str, type[Event]] = {
    cls.model_fields["type"].default: cls  # type: ignore[misc]
    for cls in Event.__subclasses__()
}

#: (type, stored schema_version) -> function bringing that payload one version up.
UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}


class StoredEvent(BaseModel):
    """An event as read back from the log, with its envelope."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    run_id: str
    seq: int
    event_id: str
    type: str
    schema_version: int
    created_at: datetime
    event: AnyEvent


__all__ = (
    "METRIC_NAMES",
    "ROLES",
    "tested_roles",
    "Answer",
    "AnyEvent",
    "CandidateAnswered",
    "CandidateScored",
    "EVENT_ADAPTER",
    "EVENT_TYPES",
    "Event",
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
    "Stage",
    "StageCompleted",
    "StageStarted",
    "StepCompleted",
    "StepProposed",
    "StepRevised",
    "StoredEvent",
    "TransferSelected",
    "UPCASTERS",
    "prompt_id_of",
)
