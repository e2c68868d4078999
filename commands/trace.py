"""``tprompt trace``: a run's spans to an OpenTelemetry collector, and the ``--otel`` of ``run``/``resume``.

Spans are built from the run's events and transcripts (:mod:`tprompt.telemetry`),
so a finished run exports the same trace as it did live, without a model call.
Nothing here imports OpenTelemetry unless an endpoint is named.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Optional

import typer
from rich.text import Text

from ..errors import UsageError
from ..stores import EventLog, StoredEvent
from ..stores.events import CandidateScored, PromptTested, RunCompleted, RunFailed, RunPaused, StageCompleted, StepCompleted
from ._common import JSON_OPTION, RUN_ARGUMENT, err, log_and_run, out, print_json, tprompt_cmd

if TYPE_CHECKING:
    from ..telemetry.otlp import LiveExport, OtlpTarget

OTEL_OPTION = typer.Option(
    None, "--otel", metavar="URL",
    help="Export the run's spans (OpenTelemetry GenAI conventions) to this OTLP/HTTP collector as the run goes, "
    "e.g. http://127.0.0.1:4318. Default: OTEL_EXPORTER_OTLP_ENDPOINT. Needs pip install 'tprompt[otel]'.",
)

#: Events that close a span: the live export sends what they closed.
_CLOSING = (StepCompleted, StageCompleted, CandidateScored, PromptTested, RunCompleted, RunFailed, RunPaused)


def otel_target(url: str | None) -> OtlpTarget | None:
    """Where a run's spans go (``--otel`` or the OTLP variables), checked before anything is written; None: nowhere."""
    import os

    if not url and not any(k in os.environ for k in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        return None  # the common case: no telemetry module, no OpenTelemetry import
    from ..telemetry.otlp import target

    where = target(url)
    if where is not None:
        import importlib.util

        if importlib.util.find_spec("opentelemetry.exporter.otlp.proto.http") is None:
            from ..errors import MissingExtra

            raise MissingExtra(f"{where.source} asks for spans at {where.endpoint}, but OpenTelemetry's OTLP exporter "
                               "is not installed", hint="pip install 'tprompt[otel]' (or unset the variable)")
    return where


@contextmanager
def live_export(log: EventLog, run_id: str, where: OtlpTarget | None) -> Iterator[Callable[[Any], None]]:
    """A hook for the run's streamed updates that exports the spans each closing event closes; a no-op without ``where``."""
    if where is None:
        yield lambda update: None
        return
    from ..telemetry.otlp import LiveExport

    live = LiveExport(log, run_id, where)

    def hook(update: Any) -> None:
        events: list[StoredEvent] | None = getattr(update, "events", None)
        if events and any(isinstance(se.event, _CLOSING) for se in events):
            live.flush()

    try:
        yield hook
    finally:
        live.close()
        _say(live, where)


def _say(live: LiveExport, where: OtlpTarget) -> None:
    if live.failure is not None:
        err.print(Text(f"otel: spans of run {live.run_id} stopped: {live.failure}; the run is not affected; "
                       f"send them later with: {tprompt_cmd()} trace {live.run_id} --otlp {where.endpoint.removesuffix('/v1/traces')}"), soft_wrap=True)
    else:
        err.print(Text(f"otel: {live.exported} span(s) of run {live.run_id} sent to {where.endpoint}"), soft_wrap=True)


def trace(
    ctx: typer.Context,
    run: str = RUN_ARGUMENT,
    otlp: Optional[str] = typer.Option(
        None, "--otlp", metavar="URL",
        help="The OTLP/HTTP collector, e.g. http://127.0.0.1:4318. Default: OTEL_EXPORTER_OTLP_ENDPOINT.",
    ),
    json_: bool = JSON_OPTION,
) -> None:
    """Send a run's trace (run, stages, steps, evaluations, every model call) to an OpenTelemetry collector.

    Built from the run's events and transcripts: no model is called. Span and trace ids derive from
    the run, event and call ids, so sending twice sends the same spans. Headers (e.g. MLflow's
    x-mlflow-experiment-id) come from OTEL_EXPORTER_OTLP_HEADERS; message content is included only
    with OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true.

    Example: tprompt trace r-1a2b3c --otlp http://127.0.0.1:4318
    """
    where = otel_target(otlp)
    if where is None:
        raise UsageError("no collector to send the trace to",
                         hint="pass --otlp URL or set OTEL_EXPORTER_OTLP_ENDPOINT, e.g. http://127.0.0.1:4318")
    from ..telemetry.otlp import SpanSender, build, export_spans

    with log_and_run(ctx, run) as (log, run_id):
        run_trace, calls = build(log, run_id)
        sender = SpanSender(where)
        try:
            sent = export_spans(log, sender, run_trace, calls, run_trace.spans)
        finally:
            sender.close()
    kinds = Counter(span.name.split(" ", 1)[0] for span in run_trace.spans)
    open_spans = sum(not span.closed for span in run_trace.spans)
    trace_id = f"{run_trace.trace_id:032x}"
    if json_:
        print_json({"run_id": run_id, "trace_id": trace_id, "endpoint": where.endpoint, "spans": sent,
                    "by_kind": dict(kinds), "open": open_spans})
        return
    out.print(Text(f"trace {trace_id} of run {run_id}: {sent} span(s) sent to {where.endpoint} "
                   f"({', '.join(f'{n} {k}' for k, n in kinds.items())})"), soft_wrap=True)
    if open_spans:
        err.print(f"{open_spans} span(s) are still open (the run is not finished); they were sent as they stand now")


def register(app: typer.Typer) -> None:
    app.command("trace")(trace)
