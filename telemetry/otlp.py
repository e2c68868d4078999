"""Export a run's spans over OTLP (HTTP, protobuf): where the collector is, and sending to it.

The endpoint comes from ``--otel URL`` / ``--otlp URL`` or the standard
variables (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, else
``OTEL_EXPORTER_OTLP_ENDPOINT`` + ``/v1/traces``); headers from
``OTEL_EXPORTER_OTLP_[TRACES_]HEADERS`` (read by the OpenTelemetry exporter
itself). :func:`target` reads only the environment; OpenTelemetry is imported
when a :class:`SpanSender` is made, so without an endpoint nothing is imported.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from .. import __version__
from ..errors import MissingExtra, TPromptError, UsageError
from ..stores.log import EventLog
from ..stores.transcripts import TranscriptRow
from .spans import CAPTURE_CONTENT_ENV, RunTrace, SpanSpec, call_body_attributes, run_spans

TRACES_PATH = "/v1/traces"
_PROTOCOLS = ("http/protobuf",)


class TelemetryError(TPromptError):
    """The collector refused or could not be reached."""

    code = "telemetry"


@dataclass(frozen=True, slots=True)
class OtlpTarget:
    """Where spans go: the full traces URL, and what named it (for messages)."""

    endpoint: str
    source: str


def target(url: str | None = None, environ: Mapping[str, str] = os.environ, *, option: str = "--otel") -> OtlpTarget | None:
    """The OTLP traces endpoint from ``url`` (a base URL, as ``OTEL_EXPORTER_OTLP_ENDPOINT``) or the environment.

    None when neither names one: then nothing is exported and nothing imported.

    Raises:
        UsageError: the URL is not an http(s) URL, or the protocol asked for is not OTLP/HTTP protobuf.
    """
    if url:
        return OtlpTarget(_traces_url(url, option), option)
    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    traces = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not traces and not base:
        return None
    if protocol and protocol not in _PROTOCOLS:
        raise UsageError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: tprompt exports OTLP over HTTP with protobuf only",
                         hint="set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf (or unset it) and use the collector's HTTP port")
    if traces:
        _check_url(traces, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        return OtlpTarget(traces, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    assert base is not None
    return OtlpTarget(_traces_url(base, "OTEL_EXPORTER_OTLP_ENDPOINT"), "OTEL_EXPORTER_OTLP_ENDPOINT")


def _traces_url(base: str, where: str) -> str:
    _check_url(base, where)
    base = base.rstrip("/")
    return base if base.endswith(TRACES_PATH) else base + TRACES_PATH


def _check_url(url: str, where: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"{where} {url!r} is not an http(s) URL",
                         hint="give the collector's OTLP/HTTP address, e.g. http://127.0.0.1:4318")


def capture_content(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether call spans carry the messages (the GenAI conventions' opt-in variable is ``true``)."""
    return environ.get(CAPTURE_CONTENT_ENV, "").strip().lower() == "true"


class SpanSender:
    """Sends :class:`SpanSpec` records to one OTLP endpoint as OpenTelemetry spans.

    Raises:
        MissingExtra: the ``otel`` extra is not installed.
    """

    def __init__(self, where: OtlpTarget, *, timeout: float = 30.0) -> None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise MissingExtra(f"exporting spans to {where.endpoint} needs OpenTelemetry's OTLP exporter",
                               hint="pip install 'tprompt[otel]'") from exc
        self.target = where
        # The exporter logs each retry on stderr; tprompt reports a failed export itself, in one line.
        logging.getLogger("opentelemetry.exporter.otlp").setLevel(logging.CRITICAL)
        # headers=None: the exporter reads OTEL_EXPORTER_OTLP_[TRACES_]HEADERS itself.
        self._exporter = OTLPSpanExporter(endpoint=where.endpoint, timeout=timeout)

    def send(self, trace: RunTrace, spans: Sequence[SpanSpec], bodies: Callable[[str], Mapping[str, Any]]) -> None:
        """Export ``spans`` of ``trace``; ``bodies(call_id)`` gives a call span's request attributes.

        Raises:
            TelemetryError: the collector did not accept them.
        """
        from opentelemetry.sdk.trace.export import SpanExportResult

        readable = [_readable(trace, span, bodies(span.call_id) if span.call_id else {}) for span in spans]
        for start in range(0, len(readable), 256):
            result = self._exporter.export(readable[start : start + 256])
            if result is not SpanExportResult.SUCCESS:
                raise TelemetryError(f"the OTLP collector at {self.target.endpoint} did not accept the spans of run "
                                     f"{trace.run_id}", hint="check that it runs and takes OTLP/HTTP protobuf there")

    def close(self) -> None:
        self._exporter.shutdown()


def _ns(at: datetime) -> int:
    return int(at.timestamp() * 1_000_000) * 1000


def _readable(trace: RunTrace, span: SpanSpec, extra: Mapping[str, Any]) -> Any:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import Link, SpanContext, SpanKind, TraceFlags
    from opentelemetry.trace.status import Status, StatusCode

    flags = TraceFlags(TraceFlags.SAMPLED)
    context = SpanContext(trace.trace_id, span.span_id, is_remote=False, trace_flags=flags)
    parent = (SpanContext(trace.trace_id, span.parent_id, is_remote=False, trace_flags=flags)
              if span.parent_id is not None else None)
    return ReadableSpan(
        name=span.name,
        context=context,
        parent=parent,
        resource=Resource.create({"service.name": "tprompt", "service.version": __version__}),
        attributes={**span.attributes, **extra},
        events=[Event(e.name, dict(e.attributes), _ns(e.at)) for e in span.events],
        links=[Link(SpanContext(tid, sid, is_remote=True, trace_flags=flags)) for tid, sid in span.links],
        kind=SpanKind.CLIENT if span.call_id else SpanKind.INTERNAL,
        status=Status(StatusCode.ERROR, span.error) if span.error else Status(StatusCode.UNSET),
        start_time=_ns(span.start),
        end_time=_ns(span.end),
        instrumentation_scope=InstrumentationScope("tprompt", __version__),
    )


def build(log: EventLog, run_id: str) -> tuple[RunTrace, dict[str, TranscriptRow]]:
    """The span tree of a run from its log, with its calls by id (to load their bodies)."""
    calls = [row for row in log.transcripts.rows([(run_id, 1, None)]) if row.run_id == run_id]
    trace = run_spans(run_id, log.events(run_id), calls)
    return trace, {row.call_id: row for row in calls}


def export_spans(log: EventLog, sender: SpanSender, trace: RunTrace, calls: Mapping[str, TranscriptRow],
                 spans: Iterable[SpanSpec], *, content: bool | None = None) -> int:
    """Send ``spans`` with each call's request parameters (and messages if opted in); returns how many."""
    content = capture_content() if content is None else content
    chosen = list(spans)

    def bodies(call_id: str) -> Mapping[str, Any]:
        row = calls[call_id]
        return call_body_attributes(log.transcripts.body(row.request_hash),
                                    log.transcripts.body(row.response_hash) if content else None, content=content)

    sender.send(trace, chosen, bodies)
    return len(chosen)


class LiveExport:
    """Exports a run's spans as it writes them: each span once it is closed, each once per process.

    Spans closed before this process started are taken as sent (by the process
    that ran them, or later by ``tprompt trace``); a failed export stops live
    export for this process and says so once (the run goes on).
    """

    def __init__(self, log: EventLog, run_id: str, where: OtlpTarget) -> None:
        self.log = log
        self.run_id = run_id
        self.sender = SpanSender(where)
        trace, _ = build(log, run_id)
        self.sent: set[int] = {s.span_id for s in trace.spans if s.closed}
        self.exported = 0
        self.failure: str | None = None

    def flush(self) -> None:
        """Send the spans closed since the last flush."""
        if self.failure is not None:
            return
        trace, calls = build(self.log, self.run_id)
        new = [s for s in trace.spans if s.closed and s.span_id not in self.sent]
        if not new:
            return
        try:
            self.exported += export_spans(self.log, self.sender, trace, calls, new)
        except TPromptError as exc:
            self.failure = str(exc)
            return
        self.sent.update(s.span_id for s in new)

    def close(self) -> None:
        self.flush()
        self.sender.close()
