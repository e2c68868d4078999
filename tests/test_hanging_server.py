"""A server that hangs must not take the user's control away.

Against a stub OpenAI-compatible server on 127.0.0.1 that accepts requests
and never answers: ``eval`` fails within its request timeout (retried like a
503) with one clear line; a ``run`` pauses on Ctrl-C (SIGINT) and on
``tprompt pause`` within a few seconds while its requests hang, and resumed
against the same server, now healthy, records the same events as an
uninterrupted run, paying again only for the calls that were in flight. A
reply with an empty ``choices`` list reads as one line naming the server.
Also: two runs in one process keep their own concurrency (the shared backend
holds none).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import stub_openai
from stub_openai import StubServer

from tprompt.graph import Runner, create_run, make_config
from tprompt.graph.api import comparable_events
from tprompt.models import ChatRequest, Recorder, get_model
from tprompt.stores import EventLog

pytest.importorskip("langchain_openai")

stub = stub_openai.stub  # the fixture

SPEC = "openai:stub"
#: Bounds on waits for state (a process exit, a request arriving); none is a sleep, none is what a test checks.
EXIT_S = 60.0
#: The bound on a process that must end although a request it sent never gets an answer: below the default
#: request timeout (``DEFAULT_REQUEST_TIMEOUT``, 180 s), so ending at all inside it proves the process did not
#: wait for that request (a held request never returns); a loaded 2-core CI has all of it for a cold start.
HANG_BOUND_S = 170.0

RUN = dict(source_tasks=["ai2_science"], target_task="arc_challenge", steps=1, candidates=2, top_k=1, examples=3,
           test_examples=3, mode="generate")


def env() -> dict[str, str]:
    values = {**os.environ}
    for var in ("OPENAI_BASE_URL", "OPENAI_API_BASE", "OPENAI_API_KEY"):
        values.pop(var, None)
    return values


def tprompt(db: Path, *args: str, timeout: float = EXIT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tprompt.cli", "--db", str(db), *args], capture_output=True,
                          text=True, env=env(), timeout=timeout)


def run_args(server: StubServer, *extra: str) -> list[str]:
    args = ["run", "--model", SPEC, "--base-url", server.base_url, "--source", "ai2_science",
            "--target", "arc_challenge"]
    for key in ("steps", "candidates", "top_k", "examples", "test_examples", "mode"):
        args += ["--" + key.replace("_", "-"), str(RUN[key])]
    return [*args, *extra]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def test_eval_against_a_hanging_server_fails_within_its_timeout_in_one_line(stub, tmp_path: Path) -> None:
    server = stub("hang")  # no request it gets is ever answered
    proc = tprompt(tmp_path / "t.db", "eval", "--task", "ai2_science", "--model", SPEC, "--base-url", server.base_url,
                   "--request-timeout", "0.5", "--mode", "generate", "-n", "2", "--json", timeout=HANG_BOUND_S)
    assert proc.returncode == 1, proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: model openai:stub failed for 2 request(s)")
    assert f"the server at {server.base_url} did not answer within 0.5 s" in lines[0]
    assert "--request-timeout" in lines[0]
    # Each request: 1 + 4 recorder retries, each given up after 0.5 s (not multiplied by client retries too):
    # ten requests held and none answered, and the process ended inside HANG_BOUND_S (which tprompt() bounds),
    # so it gave each one up rather than wait for an answer that never comes.
    assert server.received == server.held == 2 * 5 and server.answered == 0


def test_a_reply_with_empty_choices_is_one_line_naming_the_server(stub, tmp_path: Path) -> None:
    server = stub("empty")
    proc = tprompt(tmp_path / "t.db", "eval", "--task", "ai2_science", "--model", SPEC, "--base-url", server.base_url,
                   "--mode", "generate", "-n", "1", "--json")
    assert proc.returncode == 1, proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert f"the server at {server.base_url} answered without any choice (its `choices` list is empty)" in lines[0]
    assert "IndexError" not in proc.stderr and "Traceback" not in proc.stderr
    assert server.received == 1  # a malformed reply is not retried


def reference_events(server: StubServer, tmp_path: Path) -> tuple[list, int]:
    """The same run, uninterrupted against the healthy server: its events and the requests it answered."""
    before = server.answered
    with EventLog(tmp_path / "reference.db") as log:
        run_id = create_run(log, make_config({**RUN, "proposer": SPEC, "scorer": SPEC, "base_url": server.base_url}))
        assert Runner(log, run_id).run().status == "completed"
        return comparable_events(log, run_id), server.answered - before


def run_id_of(db: Path) -> str:
    with EventLog(db, readonly=True) as log:
        (summary,) = log.runs()
        return summary.run_id


@pytest.mark.parametrize("how", ["sigint", "tprompt pause"])
def test_a_run_hanging_on_its_server_pauses_within_seconds_and_resumes_to_the_same_events(
    stub: Callable[..., StubServer], tmp_path: Path, how: str
) -> None:
    answered_first = 4  # the proposer's 2 and some of the scorer's: finished calls before the hang
    server = stub("answer", hang_after=answered_first)
    db = tmp_path / "t.db"
    proc = subprocess.Popen([sys.executable, "-m", "tprompt.cli", "--db", str(db), *run_args(server)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    try:
        server.wait_for(lambda s: s.held >= 1)  # the run now waits on a request that never returns
        if how == "sigint":
            proc.send_signal(signal.SIGINT)
        else:
            done = tprompt(db, "pause", run_id_of(db))
            assert done.returncode == 0, done.stderr
        _out, err = proc.communicate(timeout=HANG_BOUND_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    # It paused while its request was still held (a held request is never answered): it did not wait for it.
    assert server.held >= 1 and server.answered == answered_first
    run_id = run_id_of(db)
    with EventLog(db, readonly=True) as log:
        assert log.state(run_id).status == "paused"
    assert server.answered == answered_first

    server.hang_after = None  # the same server (same base URL, so the same cache keys), now healthy
    resumed = tprompt(db, "resume", run_id, "--json")
    assert resumed.returncode == 0, resumed.stderr
    paid_after_resume = server.answered - answered_first

    expected, paid_uninterrupted = reference_events(server, tmp_path)
    with EventLog(db, readonly=True) as log:
        assert log.state(run_id).status == "completed"
        assert comparable_events(log, run_id) == expected
    # The answers that had arrived were kept: the resumed run paid only for the rest.
    assert answered_first + paid_after_resume == paid_uninterrupted


def test_two_runs_in_one_process_keep_their_own_concurrency(stub, tmp_path: Path) -> None:
    server = stub("answer", gather=3, gather_s=0.3)
    with EventLog(tmp_path / "t.db") as log:
        runs = {}
        for n in (1, 3):
            config = {**RUN, "proposer": SPEC, "scorer": SPEC, "base_url": server.base_url, "concurrency": n}
            runs[n] = Runner(log, create_run(log, make_config(config)))
        shared = get_model(SPEC, base_url=server.base_url)
        # Making the second runner changed neither the first's view nor the shared backend.
        assert (runs[1].scorer.concurrency, runs[3].scorer.concurrency, shared.concurrency) == (1, 3, 4)
        with Recorder(log) as recorder:
            for n, runner in runs.items():
                server.max_in_flight = 0
                requests = [ChatRequest(messages=(("user", f"question {n}.{i}"),)) for i in range(6)]
                recorder.chat(runner.scorer, requests, agent="scorer")
                assert server.max_in_flight == n
        server.gather = 0
        assert runs[1].run().status == "completed"


def test_request_timeout_of_a_grid_row_reaches_its_runs_and_an_older_grid_stays_the_same(tmp_path: Path) -> None:
    import json

    from tprompt.experiments.grid import plan_experiment, record_experiment
    from tprompt.stores import experiments as experiments_table

    grid = {"name": "g", "models": [{"proposer": "fake", "request_timeout": 900}], "targets": ["arc_challenge"],
            "run": {"steps": 1, "candidates": 2, "top_k": 1, "examples": 3, "test_examples": 3}}
    planned = plan_experiment(grid)
    assert {r.config.request_timeout for r in planned.runs} == {900.0}
    # A grid recorded before model rows had request_timeout is the same grid, not "a different config".
    plain = plan_experiment({**grid, "models": ["fake"]})
    with EventLog(tmp_path / "t.db") as log:
        recorded = plain.config.model_dump(mode="json")
        for row in recorded["models"]:
            del row["request_timeout"]
        experiments_table.record(log, "g", json.dumps(recorded, sort_keys=True))
        assert record_experiment(log, plain).experiment_id
