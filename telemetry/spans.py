"""A run as a tree of spans, built from its events and transcripts (the log is the truth).

Pure data: nothing here imports OpenTelemetry. :func:`run_spans` folds a run's
own events and its transcript rows into :class:`SpanSpec` records; the exporter
(:mod:`tprompt.telemetry.otlp`) turns them into OTLP spans.

The tree, one trace per run::

    run r-…                                   (run.created / run.forked … run.completed)
    ├── stage source                          (stage.started … stage.completed)
    │   └── step source 1                     (step.proposed … step.completed; metrics as events)
    │       ├── chat <model>     (proposer)   (one span per transcript row)
    │       └── evaluate p-… bbh/navigate     (candidate.answered … candidate.scored)
    │           ├── chat <model> (scorer)
    │           └── chat <model> (judge)
    ├── stage target …
    └── test bbh/web_of_lies
        └── evaluate best_target p-…          (prompt.tested)

Ids are derived, never random: the trace id from the run id, a span id from
the run id and the coordinates of the events that open it (stage, step, prompt,
task, rung) or from the call id for a model call. So a resumed run's spans land
in the same trace under the same parents, a re-export (``tprompt trace``) sends
the very same ids, and a fork's trace links to its parent's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..stores.events import (
    CandidateAnswered,
    CandidateJudged,
    CandidateScored,
    PromptTested,
    RunCompleted,
    RunCreated,
    RunFailed,
    RunForked,
    RunPaused,
    StageCompleted,
    StageStarted,
    StepCompleted,
    StepProposed,
    StepRevised,
    StoredEvent,
    TransferSelected,
)
from ..stores.transcripts import TranscriptRow

AttrValue = str | bool | int | float
Attributes = dict[str, AttrValue]

#: The GenAI semantic conventions' opt-in for message content (prompts and replies on call spans).
CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"


def trace_id_of(run_id: str) -> int:
    """The 128-bit trace id of a run."""
    return _digest("trace", run_id, size=16)


def span_id_of(*parts: str) -> int:
    """A 64-bit span id from its parts (the run id first)."""
    return _digest("span", *parts, size=8)


def _digest(kind: str, *parts: str, size: int) -> int:
    raw = hashlib.sha256("\x1f".join(("tprompt", kind, *parts)).encode("utf-8")).digest()[:size]
    return int.from_bytes(raw, "big") or 1  # 0 is the invalid id


@dataclass(frozen=True, slots=True)
class SpanEvent:
    """A timestamped event on a span (the GenAI conventions' ``gen_ai.evaluation.result``)."""

    name: str
    at: datetime
    attributes: Attributes


@dataclass(slots=True)
class SpanSpec:
    """One span as the log knows it. ``closed`` is False while its closing event is not written yet."""

    span_id: int
    parent_id: int | None
    name: str
    start: datetime
    end: datetime
    attributes: Attributes = field(default_factory=dict)
    events: list[SpanEvent] = field(default_factory=list)
    closed: bool = False
    error: str | None = None
    #: the call id of a model-call span (its request and response bodies are loaded to export it)
    call_id: str | None = None
    #: (trace id, span id) of spans in other traces this one follows from (a fork's parent run)
    links: list[tuple[int, int]] = field(default_factory=list)

    def widen(self, start: datetime, end: datetime | None = None) -> None:
        """Stretch the span so it covers ``start`` (and ``end``)."""
        self.start = min(self.start, start)
        self.end = max(self.end, end or start)


@dataclass(frozen=True, slots=True)
class RunTrace:
    """The spans of one run, parents before children."""

    run_id: str
    trace_id: int
    spans: list[SpanSpec]


def provider_and_model(spec: str) -> tuple[str, str]:
    """``gen_ai.provider.name`` and ``gen_ai.request.model`` of a tprompt model spec."""
    prefix, _, rest = spec.partition(":")
    if rest and prefix in ("openai", "anthropic", "ollama"):
        return prefix, rest
    if rest and prefix == "hf":
        return "transformers", rest
    if spec == "smollm2" or spec.startswith("smollm2"):
        return "transformers", spec
    return f"tprompt.{prefix}" if not rest else prefix, rest or spec


class _Builder:
    def __init__(self, run_id: str, events: Sequence[StoredEvent]) -> None:
        self.run_id = run_id
        self.events = [e for e in events if e.run_id == run_id]  # a fork's ancestors' events are in their traces
        self.spans: dict[int, SpanSpec] = {}
        self.by_seq: dict[int, StoredEvent] = {e.seq: e for e in self.events}
        first = self.events[0].created_at if self.events else datetime.now().astimezone()
        self.run = self._open(span_id_of(run_id, "run"), None, f"run {run_id}", first,
                              {"tprompt.run.id": run_id, "gen_ai.operation.name": "invoke_agent",
                               "gen_ai.agent.name": "tprompt"})
        self.test_task: str | None = None

    def _open(self, span_id: int, parent: int | None, name: str, at: datetime, attrs: Attributes,
              end: datetime | None = None) -> SpanSpec:
        span = self.spans.get(span_id)
        if span is None:
            span = self.spans[span_id] = SpanSpec(span_id, parent, name, at, end or at, dict(attrs))
        else:
            span.widen(at, end)
        if parent is not None:
            # A child stretches its ancestors so each covers it.
            up = self.spans.get(parent)
            while up is not None:
                up.widen(span.start, span.end)
                up = self.spans.get(up.parent_id) if up.parent_id is not None else None
        return span

    def stage(self, stage: str, at: datetime) -> SpanSpec:
        return self._open(span_id_of(self.run_id, "stage", stage), self.run.span_id, f"stage {stage}", at,
                          {"tprompt.stage": stage})

    def step(self, stage: str, step: int, at: datetime) -> SpanSpec:
        parent = self.stage(stage, at)
        return self._open(span_id_of(self.run_id, "step", stage, str(step)), parent.span_id, f"step {stage} {step}", at,
                          {"tprompt.stage": stage, "tprompt.step": step})

    def test(self, at: datetime) -> SpanSpec:
        return self._open(span_id_of(self.run_id, "test"), self.run.span_id,
                          f"test {self.test_task}" if self.test_task else "test", at, {"tprompt.split": "test"})

    def evaluation(self, ev: CandidateAnswered | CandidateJudged | CandidateScored | PromptTested, at: datetime) -> SpanSpec:
        """The span of one prompt's evaluation on one task (training step and rung, or test role)."""
        rung = getattr(ev, "rung", 0)
        attrs: Attributes = {"tprompt.prompt_id": ev.prompt_id, "tprompt.task": ev.task, "tprompt.split": ev.split}
        stage = getattr(ev, "stage", None)
        step = getattr(ev, "step", None)
        if stage is not None and step is not None:
            parent = self.step(stage, step, at)
            key: tuple[str, ...] = ("eval", stage, str(step), ev.prompt_id, ev.task, str(rung))
            attrs |= {"tprompt.stage": stage, "tprompt.step": step, "tprompt.rung": rung}
            name = f"evaluate {ev.prompt_id} {ev.task}"
        else:
            role = getattr(ev, "role", None) or "test"
            parent = self.test(at)
            key = ("test", role, ev.prompt_id, ev.task)
            attrs["tprompt.role"] = role
            name = f"evaluate {role} {ev.prompt_id}"
        return self._open(span_id_of(self.run_id, *key), parent.span_id, name, at, attrs)

    def fold(self) -> None:
        for se in self.events:
            self.on_event(se)

    def on_event(self, se: StoredEvent) -> None:
        at = se.created_at
        self.run.widen(at)
        match se.event:
            case RunCreated() as ev:
                self.test_task = ev.target_task
                self.run.attributes |= {"tprompt.run.name": ev.name or "", "tprompt.target_task": ev.target_task,
                                        "tprompt.source_tasks": ",".join(ev.source_tasks),
                                        "tprompt.scorer": ev.config.scorer, "tprompt.proposer": ev.config.proposer}
            case RunForked() as ev:
                self.test_task = ev.target_task
                self.run.attributes |= {"tprompt.parent_run_id": ev.parent_run_id, "tprompt.parent_seq": ev.parent_seq,
                                        "tprompt.target_task": ev.target_task}
                self.run.links.append((trace_id_of(ev.parent_run_id), span_id_of(ev.parent_run_id, "run")))
            case StageStarted() as ev:
                self.stage(ev.stage, at).attributes["tprompt.tasks"] = ",".join(ev.tasks)
            case StageCompleted() as ev:
                span = self.stage(ev.stage, at)
                span.closed = True
                span.attributes["tprompt.top_k"] = ",".join(ev.top_k)
            case TransferSelected() as ev:
                self.stage("target", at).attributes["tprompt.transferred"] = ",".join(p.prompt_id for p in ev.prompts)
            case StepProposed() | StepRevised() as ev:
                span = self.step(ev.stage, ev.step, at)
                span.attributes["tprompt.candidates"] = len(ev.candidates)
            case CandidateAnswered() | CandidateJudged() as ev:
                self.evaluation(ev, at)
            case CandidateScored() as ev:
                self._scored(ev, at)
            case PromptTested() as ev:
                self._scored(ev, at)
            case StepCompleted() as ev:
                span = self.step(ev.stage, ev.step, at)
                span.closed = True
                if ev.best_objective is not None:
                    span.attributes["tprompt.best_objective"] = ev.best_objective
                if ev.best_prompt_id is not None:
                    span.attributes["tprompt.best_prompt_id"] = ev.best_prompt_id
            case RunCompleted():
                self.run.closed = True
                if span_id_of(self.run_id, "test") in self.spans:
                    self.test(at).closed = True
            case RunFailed() as ev:
                self.run.closed = True
                self.run.error = ev.error
            case RunPaused() as ev:
                self.run.events.append(SpanEvent("tprompt.run.paused", at, {"tprompt.reason": ev.reason}))
            case _:
                pass

    def _scored(self, ev: CandidateScored | PromptTested, at: datetime) -> None:
        span = self.evaluation(ev, at)
        span.closed = True
        span.attributes |= {"tprompt.objective": ev.objective, "tprompt.n_examples": ev.n_examples,
                            **{f"tprompt.metric.{k}": v for k, v in ev.metrics.items() if v is not None}}
        # The GenAI conventions' evaluation events, one per metric, on the step (or test) span too.
        results = [SpanEvent("gen_ai.evaluation.result", at,
                             {"gen_ai.evaluation.name": name, "gen_ai.evaluation.score.value": value,
                              "tprompt.prompt_id": ev.prompt_id, "tprompt.task": ev.task})
                   for name, value in [*ev.metrics.items(), ("objective", ev.objective)] if value is not None]
        span.events.extend(results)
        if span.parent_id is not None:
            self.spans[span.parent_id].events.extend(results)

    def call(self, row: TranscriptRow) -> None:
        end = datetime.fromisoformat(row.created_at)
        if end.tzinfo is None:
            end = end.astimezone()
        start = end - timedelta(seconds=max(row.latency_s, 0.0))
        parent = self._call_parent(row, start)
        provider, model = provider_and_model(row.model)
        operation = "chat"
        attrs: Attributes = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": model,
            "gen_ai.agent.name": row.agent,
            "tprompt.call_id": row.call_id,
            "tprompt.call.kind": row.kind,
            "tprompt.cache_hit": row.cache_hit,
        }
        if row.prompt_tokens is not None:
            attrs["gen_ai.usage.input_tokens"] = row.prompt_tokens
        if row.completion_tokens is not None:
            attrs["gen_ai.usage.output_tokens"] = row.completion_tokens
        if row.cost is not None:
            attrs["tprompt.cost_usd"] = row.cost
        span = self._open(span_id_of(row.call_id), parent.span_id, f"{operation} {model}", start, attrs, end)
        span.closed = True
        span.call_id = row.call_id
        if row.error:
            span.error = row.error
            span.attributes["error.type"] = row.error.split(":", 1)[0]

    def _call_parent(self, row: TranscriptRow, at: datetime) -> SpanSpec:
        # The event the call was recorded for (its seq) places it; its step label is the fallback.
        se = self.by_seq.get(row.seq) if row.seq is not None else None
        if se is not None and isinstance(se.event, CandidateAnswered | CandidateJudged):
            return self.evaluation(se.event, at)
        label = row.step or ""
        stage, _, step = label.partition(":")
        if stage in ("source", "target") and step.isdigit():
            return self.step(stage, int(step), at)
        if label == "test":
            return self.test(at)
        return self.run


def run_spans(run_id: str, events: Iterable[StoredEvent], calls: Iterable[TranscriptRow]) -> RunTrace:
    """The span tree of ``run_id`` from its history and its own transcript rows.

    ``events`` may include a fork's ancestors' events (they are skipped: those
    spans belong to the ancestors' traces).
    """
    builder = _Builder(run_id, list(events))
    builder.fold()
    for row in calls:
        if row.run_id == run_id:
            builder.call(row)
    spans = sorted(builder.spans.values(), key=lambda s: (_depth(s, builder.spans), s.start))
    return RunTrace(run_id, trace_id_of(run_id), spans)


def _depth(span: SpanSpec, spans: Mapping[int, SpanSpec]) -> int:
    depth = 0
    while span.parent_id is not None:
        depth += 1
        span = spans[span.parent_id]
    return depth


def call_body_attributes(request: str | None, response: str | None, *, content: bool) -> Attributes:
    """The request parameters (and, opted in, the messages) of one call, from its stored bodies."""
    attrs: Attributes = {}
    try:
        body: dict[str, Any] = json.loads(request) if request else {}
    except ValueError:
        body = {}
    for key, name in (("temperature", "temperature"), ("max_tokens", "max_tokens"), ("top_p", "top_p"),
                      ("seed", "seed")):
        value = body.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            attrs[f"gen_ai.request.{name}"] = value
    if body.get("stop"):
        attrs["gen_ai.request.stop_sequences"] = json.dumps(body["stop"])
    if content:
        messages = [{"role": _role(m[0]), "parts": [{"type": "text", "content": m[1]}]}
                    for m in body.get("messages", []) if isinstance(m, list | tuple) and len(m) == 2]
        attrs["gen_ai.input.messages"] = json.dumps(messages, ensure_ascii=False)
        if body.get("options"):
            attrs["tprompt.request.options"] = json.dumps(body["options"], ensure_ascii=False)
        if response is not None:
            attrs["gen_ai.output.messages"] = json.dumps(
                [{"role": "assistant", "parts": [{"type": "text", "content": response}]}], ensure_ascii=False)
    return attrs


def _role(role: str) -> str:
    return {"human": "user", "ai": "assistant"}.get(role, role)
