"""Served models end to end: tprompt against a real ``transformers serve`` on 127.0.0.1.

Every request goes through the real langchain-openai client to a real
OpenAI-compatible server (see served_server.py). The runs use a proposer at
temperature 0: ``transformers serve`` seeds torch's global generator when it
parses a request, so concurrent sampled requests would race for it; greedy
answers do not depend on the order the server handles them in.

The server computes a token at a time for every request, one request at a time:
on two loaded cores a call takes up to half a minute. So the runs are as small
as what they prove allows: one stage (the stages' logic is the graph's, tested on
the fake model; the server only answers calls), one candidate (at temperature 0 a
second is the first one again), two examples, a short proposal; and the kill -9
run is also the concurrent one: killed at --concurrency 4 and resumed, it must
write the serial run's events (the resume's answers come from the cache the
killed run filled), so one run proves both.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from served_server import Server, served  # noqa: F401  (the session fixture)
from test_graph import wait_for_row

from tprompt.graph import comparable_events
from tprompt.stores import EventLog

pytestmark = pytest.mark.served

EXAMPLES = 2
RUN_SETTINGS = f"""
source_tasks = []
transfer = false
target_task = "arc_challenge"
steps = 1
candidates = 1
examples = {EXAMPLES}
test_examples = {EXAMPLES}
proposer_temperature = 0.0
proposer_max_tokens = 16
"""


#: Bounds a hang only: a run makes about 8 calls, each up to half a minute on two loaded cores.
TIMEOUT_S = 900


def tprompt(db: Path, *args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "tprompt.cli", "--db", str(db), *args],
        capture_output=True, text=True, env=env or _env(), timeout=TIMEOUT_S,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"tprompt {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_BASE")}
    env.update(extra)
    return env


def run_args(server: Server, config: Path, *extra: str) -> list[str]:
    return ["run", "--json", "--config", str(config), "--model", server.spec, "--base-url", server.base_url, *extra]


def paid_twice(db: Path) -> list[tuple[str, int]]:
    """Cache keys the model was asked for more than once (answered, not from the cache)."""
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT cache_key, count(*) FROM transcripts WHERE cache_hit = 0 AND error IS NULL "
            "GROUP BY cache_key HAVING count(*) > 1"
        ).fetchall()


def call_counts(db: Path) -> tuple[int, int]:
    """(answered by the model, answered from the cache) over every transcript row."""
    with sqlite3.connect(db) as conn:
        paid, hits = conn.execute(
            "SELECT sum(cache_hit = 0 AND error IS NULL), sum(cache_hit = 1) FROM transcripts"
        ).fetchone()
    return paid or 0, hits or 0


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("served-config") / "run.toml"
    path.write_text(RUN_SETTINGS)
    return path


@pytest.fixture(scope="module")
def serial_run(served: Server, settings: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict]:  # noqa: F811
    """A complete run against the server, one request at a time: the reference the other runs must equal."""
    db = tmp_path_factory.mktemp("serial") / "t.db"
    started = time.monotonic()
    out = tprompt(db, *run_args(served, settings, "--concurrency", "1"))
    result = json.loads(out.stdout)
    result["wall_s"] = time.monotonic() - started
    return db, result["run_id"], result


def test_eval_against_the_server_is_cached_and_stores_no_key(served: Server, tmp_path: Path) -> None:  # noqa: F811
    db = tmp_path / "t.db"
    env = _env(OPENAI_BASE_URL=served.base_url)
    args = ("eval", "--task", "arc_challenge", "--prompt", "Answer carefully.", "--model", served.spec,
            "-n", str(EXAMPLES), "--json")
    first = json.loads(tprompt(db, *args, env=env).stdout)
    assert first["counts"]["model_calls"] == EXAMPLES and first["counts"]["examples"] == EXAMPLES
    again = json.loads(tprompt(db, *args, env=env).stdout)
    assert again["counts"]["model_calls"] == 0 and again["counts"]["cache_hits"] == EXAMPLES
    assert again["metrics"] == first["metrics"]
    with sqlite3.connect(db) as conn:
        requests = [json.loads(r[0]) for r in conn.execute(
            "SELECT b.body FROM transcripts t JOIN bodies b ON b.hash = t.request_hash"
        )]
        dump = "\n".join(line for line in conn.iterdump())
    assert requests and all(r["revision"] == f"{served.spec}@{served.base_url}" for r in requests)
    assert "tprompt-no-key" not in dump  # the placeholder key, like any key, is never stored


def test_a_different_server_url_is_a_different_cache_key(served: Server, tmp_path: Path) -> None:  # noqa: F811
    from tprompt.models import ChatRequest
    from tprompt.models.api import ApiBackend
    from tprompt.models.recorder import cache_key, chat_request_body

    here = ApiBackend("openai", served.model, spec=served.spec, base_url=served.base_url + "/")
    there = ApiBackend("openai", served.model, spec=served.spec, base_url="http://10.0.0.1:8000/v1")
    request = ChatRequest(messages=(("user", "hi"),))
    assert here.revision == f"{served.spec}@{served.base_url}"  # trailing slash dropped
    assert cache_key(chat_request_body(here, request)) != cache_key(chat_request_body(there, request))


def test_complete_run(serial_run: tuple[Path, str, dict]) -> None:
    db, run_id, result = serial_run
    assert result["status"] == "completed"
    assert {row["role"] for row in result["table"]} == {"original", "best_target"}
    assert all(row["n_examples"] == EXAMPLES for row in result["table"])
    paid, hits = call_counts(db)
    assert paid > 0 and not paid_twice(db)
    log = EventLog(db)
    types = [e.type for e in log.events(run_id)]
    assert types[0] == "run.created" and types[-1] == "run.completed"
    print(f"\nserved run: {paid} requests to the server, {hits} cache hits, {result['wall_s']:.1f} s")
    for row in result["table"]:
        print(f"  {row['role']:<12} accuracy {row['accuracy']:.3f} objective {row['objective']:.3f}")


def test_kill_9_of_a_concurrent_run_then_resume_writes_the_serial_runs_events(
    served: Server, settings: Path, serial_run: tuple[Path, str, dict], tmp_path: Path  # noqa: F811
) -> None:
    db = tmp_path / "crash.db"
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tprompt.cli", "--db", str(db), *run_args(served, settings, "--concurrency", "4")],
        env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        # In the middle: the original has been scored, and the next candidate has an answer no event holds yet
        # (the server answers one request at a time: its other answer is seconds away).
        wait_for_row(
            db,
            "SELECT 1 FROM events WHERE type = 'candidate.scored' AND "
            "(SELECT count(*) FROM transcripts WHERE agent = 'scorer') > "
            f"(SELECT count(*) FROM events WHERE type = 'candidate.scored') * {EXAMPLES}",
            proc, timeout=TIMEOUT_S,
        )
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        proc.stderr.close()
    log = EventLog(db)
    (run,) = log.runs()
    assert log.state(run.run_id).status == "running", "the run finished before it was killed"
    paid_before, _ = call_counts(db)
    out = tprompt(db, "resume", run.run_id, "--json")
    wall = time.monotonic() - started
    assert json.loads(out.stdout)["status"] == "completed"
    paid, hits = call_counts(db)
    assert not paid_twice(db)
    assert hits > 0  # the resume took the killed run's answer from the cache
    ref_db, ref_run, ref = serial_run
    # the same events as the serial run: neither the kill nor the concurrency changed the result
    assert same_run(log, run.run_id) == same_run(EventLog(ref_db), ref_run)
    print(f"\nkill -9 after {paid_before} paid calls; resume paid {paid - paid_before} more, {hits} cache hits; "
          f"concurrency 4 with the kill: {wall:.1f} s, serial: {ref['wall_s']:.1f} s")


def test_logprob_mode_needs_logprobs_and_auto_falls_back(served: Server, tmp_path: Path) -> None:  # noqa: F811
    db = tmp_path / "t.db"
    args = ("eval", "--task", "arc_challenge", "--prompt", "Answer carefully.", "--model", served.spec, "-n", "2")
    env = _env(OPENAI_BASE_URL=served.base_url)
    failed = tprompt(db, *args, "--mode", "logprob", env=env, check=False)
    assert failed.returncode != 0
    # eval opens the scorer as `run` does, so it refuses the mode with run's line
    assert "mode logprob needs option probabilities (a local model, or a server that returns logprobs)" in failed.stderr
    assert "Traceback" not in failed.stderr and len(failed.stderr.strip().splitlines()) == 1

    from tprompt.models.api import ApiBackend

    backend = ApiBackend("openai", served.model, spec=served.spec, base_url=served.base_url)
    assert backend.supports_option_probs is False  # transformers serve ignores logprobs/top_logprobs
    from tprompt.graph import RunConfig, Runner, create_run

    log = EventLog(tmp_path / "auto.db")
    config = RunConfig(proposer=served.spec, scorer=served.spec, base_url=served.base_url, mode="auto",
                       steps=1, candidates=1, top_k=1, examples=1, test_examples=1)
    run_id = create_run(log, config)
    runner = Runner(log, run_id)
    assert runner.mode_for(runner.task("arc_challenge")) == "generate"


def same_run(log: EventLog, run_id: str) -> list:
    """The run's comparable events, without the concurrency setting (it must not change the result)."""
    events = comparable_events(log, run_id)
    for _type, payload in events:
        if "config" in payload:
            payload["config"].pop("concurrency", None)
    return events
