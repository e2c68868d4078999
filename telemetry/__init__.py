"""Runs where users look: OpenTelemetry spans (GenAI conventions) built from a run's events and transcripts.

:mod:`.spans` is pure (no OpenTelemetry import); :mod:`.otlp` exports over OTLP
and needs the ``otel`` extra (``pip install 'tprompt[otel]'``). Nothing in the
core imports this package.
"""

from .spans import CAPTURE_CONTENT_ENV, RunTrace, SpanSpec, run_spans, span_id_of, trace_id_of

__all__ = ("CAPTURE_CONTENT_ENV", "RunTrace", "SpanSpec", "run_spans", "span_id_of", "trace_id_of")
