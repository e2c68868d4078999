"""One served model behind several endpoints (replicas): spread, capped per endpoint, failing over.

Against stub OpenAI-compatible servers on 127.0.0.1 (:mod:`stub_openai`): a
run over two endpoints, one of which starts answering 503, answers every
request and logs the same events as a run against one healthy server; each
endpoint never has more than ``concurrency`` requests in flight; the cache key
does not depend on the endpoint that answered (a rerun is all hits); a grid row
with two base URLs reaches its runs; bad lists are one clear line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import stub_openai

from tprompt.errors import ConfigError, ModelCallFailed
from tprompt.graph import Runner, create_run, make_config
from tprompt.models import ChatRequest, Recorder, _endpoints, api, get_model
from tprompt.models.api import CLIENT_RETRIES, ApiBackend
from tprompt.stores import EventLog

pytest.importorskip("langchain_openai")

stub = stub_openai.stub  # the fixture

SPEC = "openai:stub"
RUN = dict(source_tasks=["ai2_science"], target_task="arc_challenge", steps=1, candidates=2, top_k=1, examples=4,
           test_examples=4, mode="generate", proposer=SPEC, scorer=SPEC, concurrency=2)


def _events(db: Path, run_id: str) -> list[tuple[str, dict[str, Any]]]:
    return stub_openai.completed_events(db, run_id, ("base_url",))


def _run(db: Path, base_url: str | list[str]) -> str:
    with EventLog(db) as log:
        run_id = create_run(log, make_config({**RUN, "base_url": base_url}))
        assert Runner(log, run_id).run().status == "completed"
    return run_id


def _failed_calls(db: Path) -> int:
    import sqlite3

    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM transcripts WHERE error IS NOT NULL").fetchone()[0]


def test_a_run_over_two_endpoints_one_failing_answers_every_request_with_a_one_endpoint_runs_events(
    stub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_endpoints, "COOL_DOWN_S", 600.0)  # once down, the bad endpoint stays out for this test
    single = stub("answer")
    expected = _events(tmp_path / "one.db", _run(tmp_path / "one.db", single.base_url))
    paid = single.answered

    good, bad = stub("answer", gather=2, gather_s=0.2), stub("answer", fail_after=3, gather=2, gather_s=0.2)
    db = tmp_path / "two.db"
    run_id = _run(db, [good.base_url, bad.base_url])

    assert bad.failures > 0 and bad.answered == 3  # it did go bad, and answered before it did
    # Failed over, not retried on it: only the requests it held when it went bad (at most its cap) saw a 503.
    assert bad.failures <= 2
    assert good.answered + bad.answered == paid  # every request answered once: none lost, none paid twice
    assert _failed_calls(db) == 0
    assert _events(db, run_id) == expected
    # Never more than `concurrency` (2) in flight on either endpoint.
    assert good.max_in_flight <= 2 and bad.max_in_flight <= 2

    # The cache key is the same whichever endpoint answered: the same run again asks neither server.
    before = (good.received, bad.received)
    again = _run(db, [bad.base_url, good.base_url])  # the same endpoints in another order: the same cache
    assert (good.received, bad.received) == before
    assert _events(db, again) == expected


def test_requests_are_spread_over_the_endpoints_up_to_the_cap_on_each(stub) -> None:
    servers = [stub("answer", gather=3, gather_s=0.3) for _ in range(2)]  # holds each until 3 are in flight
    backend = get_model(SPEC, base_url=[s.base_url for s in servers], concurrency=2)
    assert backend.concurrency == 4  # the sum of the caps
    assert backend.revision == f"{SPEC}@{','.join(sorted(s.base_url for s in servers))}"
    batches = [[ChatRequest(messages=(("user", f"question {b}.{i}"),)) for i in range(8)] for b in range(2)]
    with ThreadPoolExecutor(2) as pool:  # two callers at once: 8 threads for the 4 slots
        list(pool.map(backend.generate, batches))
    assert [s.answered for s in servers] == [8, 8]  # spread evenly (least in flight, ties in turn)
    assert [s.max_in_flight for s in servers] == [2, 2]  # each reached its cap and never passed it


def test_a_refusing_endpoint_is_failed_over_and_when_all_fail_the_error_is_one_endpoints(
    stub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    up, gone, bad = stub("answer"), stub("answer"), stub("answer", fail_after=0)
    gone.close()  # never connected to: connections to it are refused
    backend = ApiBackend("openai", "stub", spec=SPEC, base_url=[gone.base_url, up.base_url], request_timeout=5)
    with monkeypatch.context() as patch:
        patch.setattr(api, "CLIENT_RETRIES", 0)  # so only failover, not a retry on the same endpoint, can answer
        answers = backend.generate([ChatRequest(messages=(("user", f"q{i}"),)) for i in range(4)])
    assert len(answers) == 4 and up.answered == 4

    # Every endpoint failing: the one-endpoint rules (client retries, then the recorder's) and one clear error.
    down = ApiBackend("openai", "stub", spec=SPEC, base_url=[gone.base_url, bad.base_url], request_timeout=5)
    with Recorder(tmp_path / "t.db", retries=0) as recorder, pytest.raises(ModelCallFailed) as caught:
        recorder.chat(down, [ChatRequest(messages=(("user", "q"),))], agent="scorer")
    assert len(str(caught.value).splitlines()) == 1
    # The first try fails over from the refusing endpoint to the 503 one; with both down, the client's
    # retries then take one endpoint each, in turn (gone, bad, gone): 1 + CLIENT_RETRIES tries after the first.
    assert CLIENT_RETRIES == 3 and bad.failures == 2


def test_a_grid_row_with_two_base_urls_reaches_its_runs() -> None:
    from tprompt.experiments.grid import plan_experiment

    urls = ["http://127.0.0.1:8000/v1", "http://127.0.0.1:8001/v1/"]
    grid = {"name": "g", "models": [{"proposer": SPEC, "base_url": urls}], "targets": ["arc_challenge"],
            "run": {"steps": 1, "candidates": 2, "top_k": 1, "examples": 3, "test_examples": 3}}
    planned = plan_experiment(grid)
    assert {tuple(r.config.base_url) for r in planned.runs} == {(urls[0], urls[1].rstrip("/"))}
    one = plan_experiment({**grid, "models": [{"proposer": SPEC, "base_url": urls[0]}]})
    assert {r.config.base_url for r in one.runs} == {urls[0]}  # one URL stays a string, as in older grids


@pytest.mark.parametrize("bad, says", [
    ([], "the list of base URLs is empty"),
    (["http://127.0.0.1:8000/v1", "localhost:8001"], "'localhost:8001' is not an http(s) URL"),
    (["http://a/v1", "http://a/v1/"], "http://a/v1 is listed twice"),
])
def test_a_bad_list_of_base_urls_is_one_clear_line(bad: list[str], says: str) -> None:
    from tprompt.experiments.grid import plan_experiment

    with pytest.raises(ConfigError) as in_run:
        make_config({**RUN, "base_url": bad})
    grid = {"name": "g", "models": [{"proposer": SPEC, "base_url": bad}], "targets": ["arc_challenge"]}
    with pytest.raises(ConfigError) as in_grid:
        plan_experiment(grid)
    for caught in (in_run, in_grid):
        assert says in str(caught.value) and len(str(caught.value).splitlines()) == 1


def test_the_command_line_refuses_a_bad_base_url_in_one_line_and_writes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    done = subprocess.run(
        [sys.executable, "-m", "tprompt.cli", "--db", str(db), "run", "--model", SPEC,
         "--base-url", "http://127.0.0.1:8000/v1", "--base-url", "127.0.0.1:8001"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode != 0 and len(lines) == 1, done.stderr
    assert "--base-url: '127.0.0.1:8001' is not an http(s) URL" in lines[0]
    assert not db.exists()


def test_a_config_written_before_lists_reads_the_same(tmp_path: Path) -> None:
    from tprompt.config import RunConfig

    old = make_config({**RUN, "base_url": "http://127.0.0.1:8000/v1/"}).model_dump_json()
    again = RunConfig.model_validate_json(old)
    assert again.base_url == "http://127.0.0.1:8000/v1/"  # a stored string stays that string


def test_a_server_echoing_the_api_key_does_not_get_it_stored(
        stub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Issue 32: the key tprompt sent came back in the reply text and was stored in events and bodies.
    key = "sk-test-ECHOED-0123456789abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    server = stub("answer", echo_auth=True)
    db = tmp_path / "t.db"
    run_id = _run(db, server.base_url)
    assert server.answered > 0
    with EventLog(db, readonly=True) as log:
        assert log.state(run_id).status == "completed"
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("t.db"))
    assert key.encode() not in stored
    assert b"Bearer ***" in stored  # the echo itself is kept, the key masked


def test_a_server_that_reads_only_the_legacy_max_tokens_gets_it(
        stub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Issue 32: llama.cpp's Python server drops max_completion_tokens (what langchain-openai sends), so every
    # one-token request wrote a whole reply. A base_url server gets the legacy max_tokens beside it.
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    expected = _events(tmp_path / "new.db", _run(tmp_path / "new.db", stub("answer").base_url))
    legacy = stub("answer", legacy_only=True)
    assert _events(tmp_path / "old.db", _run(tmp_path / "old.db", legacy.base_url)) == expected
    assert legacy.bodies and all(b.get("max_tokens") == b.get("max_completion_tokens") for b in legacy.bodies)
    model = ApiBackend("openai", "gpt-x", spec="openai:gpt-x", base_url="https://api.openai.com/v1")
    assert not model._legacy_max_tokens  # OpenAI's own API refuses a request carrying both


@pytest.mark.parametrize("bad", ["ftp://127.0.0.1:8000/v1", "http://127.0.0.1\x00:8000/v1", "localhost:8000"])
def test_a_bad_base_url_is_refused_whatever_the_model(tmp_path: Path, bad: str) -> None:
    # was: accepted (and stored in the run) when the model is fake, which never calls it
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"base_url": bad}))
    with pytest.raises(ConfigError) as caught:
        make_config({**RUN, "proposer": "fake", "scorer": "fake", "base_url": bad})
    assert "is not an http(s) URL" in str(caught.value) and "\x00" not in str(caught.value)
    db = tmp_path / "t.db"
    done = subprocess.run([sys.executable, "-m", "tprompt.cli", "--db", str(db), "run", "--model", "fake",
                           "--config", str(config)], capture_output=True, text=True, timeout=120)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode != 0 and "Traceback" not in done.stderr and len(lines) <= 2, done.stderr
    assert "is not an http(s) URL" in lines[0] and str(config) in lines[0] and not db.exists()
