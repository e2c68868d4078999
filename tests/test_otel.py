"""OpenTelemetry export (issue 33): spans built from a run's events and transcripts, sent over OTLP
to a real collector (MLflow's tracking server on 127.0.0.1) and read back through its API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from mlflow_server import MlflowServer
from test_graph import SMALL, cli_args, run_in_process, tprompt

from tprompt.graph import create_run, make_config
from tprompt.graph.runner import Runner
from tprompt.stores import EventLog
from tprompt.telemetry import run_spans, span_id_of, trace_id_of
from tprompt.telemetry.otlp import build, target

OTEL_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_HEADERS",
             "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in OTEL_VARS}
    return {**env, **extra}


def run_id_of(stderr: str) -> str:
    return stderr.split("run ", 1)[1].split()[0]


def as_json(value: object) -> object:
    return json.loads(value) if isinstance(value, str) else value


def mlflow_trace(server: MlflowServer, trace_id: int):
    from mlflow import MlflowClient

    return MlflowClient(server.url).get_trace(f"tr-{trace_id:032x}")


def test_span_tree_from_the_log(tmp_path: Path) -> None:
    log, run_id = run_in_process(tmp_path / "t.db")
    trace, calls = build(log, run_id)
    spans = {s.span_id: s for s in trace.spans}
    roots = [s for s in trace.spans if s.parent_id is None]
    assert [r.name for r in roots] == [f"run {run_id}"]
    assert all(s.parent_id in spans for s in trace.spans if s.parent_id is not None)
    kinds = Counter(s.name.split()[0] for s in trace.spans)
    assert kinds["stage"] == 2 and kinds["test"] == 1 and kinds["step"] == 6  # steps 0..2 of each stage
    assert kinds["chat"] == len(calls) > 0  # one span per transcript row
    agents = Counter(s.attributes["gen_ai.agent.name"] for s in trace.spans if s.call_id)
    assert set(agents) == {"proposer", "scorer"}
    for span in trace.spans:  # a child lies within its parent
        if span.parent_id is not None:
            parent = spans[span.parent_id]
            assert parent.start <= span.start and span.end <= parent.end, (span.name, parent.name)
    assert all(s.closed for s in trace.spans)
    # Ids derive from the log: built again (another process, a re-export), the same ids.
    again, _ = build(log, run_id)
    assert [(s.span_id, s.parent_id) for s in again.spans] == [(s.span_id, s.parent_id) for s in trace.spans]
    assert trace.trace_id == trace_id_of(run_id)


def test_a_prefix_of_the_log_gives_the_same_ids(tmp_path: Path) -> None:
    """A run killed and resumed is a prefix and then the rest: its spans keep their ids and parents."""
    log, run_id = run_in_process(tmp_path / "t.db")
    events = list(log.events(run_id))
    calls = log.transcripts.rows([(run_id, 1, None)])
    full = {s.span_id: s for s in run_spans(run_id, events, calls).spans}
    half = len(events) // 2
    prefix = run_spans(run_id, events[:half], [c for c in calls if c.seq is not None and c.seq <= half])
    assert prefix.spans and all(s.span_id in full and full[s.span_id].parent_id == s.parent_id for s in prefix.spans)
    assert not prefix.spans[0].closed  # the run span closes only with run.completed


def test_cached_calls_are_marked_and_a_fork_links_to_its_parent(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    log, first = run_in_process(db)
    second = create_run(log, make_config(SMALL))  # the same requests: every call a cache hit
    Runner(log, second).run()
    trace, _ = build(log, second)
    hits = [s.attributes["tprompt.cache_hit"] for s in trace.spans if s.call_id]
    assert hits and all(hits)
    forked = tprompt(db, "fork", first, "--at", "5", "--no-start").stdout.split()[0]
    fork_trace, _ = build(log, forked)
    run_span = fork_trace.spans[0]
    assert fork_trace.trace_id == trace_id_of(forked) != trace_id_of(first)
    assert run_span.links == [(trace_id_of(first), span_id_of(first, "run"))]
    assert run_span.attributes["tprompt.parent_run_id"] == first


def test_target_comes_from_the_flag_or_the_standard_variables() -> None:
    assert target(None, {}) is None
    assert target("http://h:4318", {}).endpoint == "http://h:4318/v1/traces"
    assert target(None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://h:4318/"}).endpoint == "http://h:4318/v1/traces"
    assert target(None, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://h/x"}).endpoint == "http://h/x"


def test_bad_otel_inputs_are_one_line_and_write_nothing(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    env = clean_env(TPROMPT_DB=str(db))
    proc = subprocess.run([sys.executable, "-m", "tprompt.cli", "run", *cli_args(), "--otel", "ftp://x"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and "--otel 'ftp://x' is not an http(s) URL" in proc.stderr
    assert "Traceback" not in proc.stderr and not db.exists()
    grpc = subprocess.run([sys.executable, "-m", "tprompt.cli", "run", *cli_args()], capture_output=True, text=True,
                          env={**env, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
                          timeout=120)
    assert grpc.returncode == 2 and "OTLP over HTTP with protobuf only" in grpc.stderr and not db.exists()
    log, run_id = run_in_process(db)
    log.close()
    none = subprocess.run([sys.executable, "-m", "tprompt.cli", "trace", run_id], capture_output=True, text=True,
                          env=env, timeout=120)
    assert none.returncode == 2 and "no collector to send the trace to" in none.stderr


def test_an_unreachable_collector_does_not_stop_the_run(tmp_path: Path) -> None:
    from served_server import free_port

    db = tmp_path / "t.db"
    proc = subprocess.run([sys.executable, "-m", "tprompt.cli", "run", *cli_args(steps=1), "--otel",
                           f"http://127.0.0.1:{free_port()}"], capture_output=True, text=True,
                          env=clean_env(TPROMPT_DB=str(db)), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "otel: spans of run" in proc.stderr and "stopped" in proc.stderr, proc.stderr[-3000:]
    assert f" trace {run_id_of(proc.stderr)} --otlp http://127.0.0.1:" in proc.stderr
    assert "Transient error" not in proc.stderr  # the exporter's own retry log is not shown


@pytest.mark.mlflow
def test_a_run_exports_its_spans_live_to_mlflow(tmp_path: Path, mlflow_server: MlflowServer) -> None:
    db = tmp_path / "t.db"
    proc = subprocess.run([sys.executable, "-m", "tprompt.cli", "run", "--json", *cli_args(steps=1),
                           "--judge", "fake", "--otel", mlflow_server.url],
                          capture_output=True, text=True, timeout=600,
                          env=clean_env(TPROMPT_DB=str(db), OTEL_EXPORTER_OTLP_HEADERS="x-mlflow-experiment-id=0"))
    assert proc.returncode == 0, proc.stderr
    run_id = json.loads(proc.stdout)["run_id"]
    log = EventLog(db, readonly=True)
    expected, calls = build(log, run_id)
    got = mlflow_trace(mlflow_server, expected.trace_id)
    names = Counter(s.name.split()[0] for s in got.data.spans)
    assert names == Counter(s.name.split()[0] for s in expected.spans)
    assert names["chat"] == len(calls)
    by_id = {s.span_id: s for s in got.data.spans}
    assert {f"{s.span_id:016x}" for s in expected.spans} == set(by_id)
    chats = [s for s in got.data.spans if s.name.startswith("chat")]
    assert {s.attributes["gen_ai.agent.name"] for s in chats} == {"proposer", "scorer", "judge"}
    for span in chats:
        attrs = span.attributes
        assert attrs["gen_ai.operation.name"] == "chat"
        assert attrs["gen_ai.provider.name"] == "tprompt.fake" and attrs["gen_ai.request.model"] == "fake"
        assert isinstance(attrs["gen_ai.usage.input_tokens"], int) and "gen_ai.request.max_tokens" in attrs
        assert "gen_ai.request.temperature" in attrs and "gen_ai.input.messages" not in attrs  # content is opt-in
    scorer = next(s for s in chats if s.attributes["gen_ai.agent.name"] == "scorer")
    assert by_id[scorer.parent_id].name.startswith("evaluate ")
    steps = [s for s in got.data.spans if s.name.startswith("step ")]
    results = [e for s in steps for e in s.events if e.name == "gen_ai.evaluation.result"]
    assert {e.attributes["gen_ai.evaluation.name"] for e in results} >= {"accuracy", "objective", "judge_relevance"}
    assert all("tprompt.best_objective" in s.attributes for s in steps)
    assert "otel: " in proc.stderr and "span(s) of run" in proc.stderr


@pytest.mark.mlflow
def test_trace_command_sends_a_finished_run_with_content_on_request(tmp_path: Path, mlflow_server: MlflowServer) -> None:
    db = tmp_path / "t.db"
    log, run_id = run_in_process(db, steps=1)
    expected, _ = build(log, run_id)
    log.close()
    env = clean_env(TPROMPT_DB=str(db), OTEL_EXPORTER_OTLP_HEADERS="x-mlflow-experiment-id=0",
                    OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="true")
    proc = subprocess.run([sys.executable, "-m", "tprompt.cli", "trace", run_id, "--otlp", mlflow_server.url, "--json"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["spans"] == len(expected.spans) and report["trace_id"] == f"{expected.trace_id:032x}"
    got = mlflow_trace(mlflow_server, expected.trace_id)
    assert len(got.data.spans) == len(expected.spans)
    chat = next(s for s in got.data.spans if s.name.startswith("chat") and s.attributes["gen_ai.agent.name"] == "scorer")
    messages = as_json(chat.attributes["gen_ai.input.messages"])  # sent as a JSON string; MLflow hands it back parsed
    assert messages[0]["role"] == "system" and messages[-1]["parts"][0]["type"] == "text"
    assert as_json(chat.attributes["gen_ai.output.messages"])[0]["role"] == "assistant"
    # Sent again: the same ids, so the collector still holds one copy of each span.
    subprocess.run([sys.executable, "-m", "tprompt.cli", "trace", run_id, "--otlp", mlflow_server.url],
                   capture_output=True, text=True, env=env, timeout=300, check=True)
    assert len(mlflow_trace(mlflow_server, expected.trace_id).data.spans) == len(expected.spans)
