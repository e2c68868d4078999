"""Servers as users run them (issue 32): llama.cpp's server, and the settings it needs.

Against a stub OpenAI-compatible server on 127.0.0.1 (:mod:`stub_openai`) that
behaves as llama.cpp's Python server does: it reads the length limit only under
the legacy name ``max_tokens``, and applies a repeat penalty unless the request
sets ``repeat_penalty`` to 1.0. A run config's ``extra_body`` (server
parameters) reaches every request, is validated, recorded in the run and part
of the cache key; logprob requests stay one token.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import stub_openai

from tprompt.config import load_config_file
from tprompt.errors import ConfigError, UsageError
from tprompt.experiments.grid import load_experiment_file, plan_experiment
from tprompt.graph import Runner, create_run, make_config
from tprompt.models import ChatRequest, Recorder, get_model
from tprompt.stores import EventLog

pytest.importorskip("langchain_openai")

stub = stub_openai.stub  # the fixture

SPEC = "openai:stub"
RUN = dict(source_tasks=["ai2_science"], target_task="arc_challenge", steps=1, candidates=2, top_k=1, examples=4,
           test_examples=4, mode="auto", proposer=SPEC, scorer=SPEC, concurrency=2)
#: Config keys that name the server (its port) or its settings, not what it answered.
_SERVER_KEYS = ("base_url", "extra_body", "server_logprobs")


@pytest.fixture(autouse=True)
def _no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_BASE"):
        monkeypatch.delenv(var, raising=False)


def _run(db: Path, values: dict[str, Any]) -> str:
    with EventLog(db) as log:
        run_id = create_run(log, make_config({**RUN, **values}))
        assert Runner(log, run_id).run().status == "completed"
    return run_id


def _events(db: Path, run_id: str) -> list[tuple[str, dict[str, Any]]]:
    return stub_openai.completed_events(db, run_id, _SERVER_KEYS)


def test_extra_body_reaches_a_llama_cpp_like_server_and_its_answers_are_the_penalty_free_ones(
        stub, tmp_path: Path) -> None:
    # Issue 32: llama.cpp's server applies repeat_penalty 1.1 by default, which changes greedy answers, and
    # tprompt had no way to send server parameters. `extra_body = {repeat_penalty = 1.0}` in a run config.
    expected = _events(tmp_path / "plain.db", _run(tmp_path / "plain.db", {"base_url": stub("answer", logprobs=True).base_url}))

    llama = stub("answer", logprobs=True, legacy_only=True, penalty=True)
    config = tmp_path / "run.toml"
    config.write_text(f'base_url = "{llama.base_url}"\n\n[extra_body]\nrepeat_penalty = 1.0\n')
    values = load_config_file(config)
    assert values["extra_body"] == {"repeat_penalty": 1.0}
    run_id = _run(tmp_path / "llama.db", values)
    assert _events(tmp_path / "llama.db", run_id) == expected
    assert llama.bodies and all(b.get("repeat_penalty") == 1.0 for b in llama.bodies)
    with EventLog(tmp_path / "llama.db", readonly=True) as log:  # recorded: resume and replay send the same
        assert log.state(run_id).config.extra_body == {"repeat_penalty": 1.0}

    # Logprob requests (the scorer's, in auto mode on a multiple-choice task) generated one token each:
    # the server read the legacy max_tokens tprompt sends beside max_completion_tokens.
    logprob = [n for body, n in zip(llama.bodies, llama.generated) if body.get("logprobs")]
    assert len(logprob) >= RUN["examples"] and set(logprob) == {1}

    # Without the setting the same server answers otherwise (the stub's penalty is real).
    penalized = stub("answer", logprobs=True, legacy_only=True, penalty=True)
    assert _events(tmp_path / "pen.db", _run(tmp_path / "pen.db", {"base_url": penalized.base_url})) != expected


def test_server_parameters_are_part_of_the_cache_key(stub, tmp_path: Path) -> None:
    server = stub("answer", penalty=True)
    plain = get_model(SPEC, base_url=server.base_url)
    free = get_model(SPEC, base_url=server.base_url, extra_body={"repeat_penalty": 1.0})
    assert free is not plain and free.revision != plain.revision
    assert get_model(SPEC, base_url=server.base_url, extra_body={"repeat_penalty": 1.0}) is free  # shared
    request = ChatRequest(messages=(("user", "Question: 2+2?\nReply with a number."),), max_tokens=8)
    with Recorder(tmp_path / "t.db") as recorder:
        first = recorder.chat(plain, [request], agent="scorer")[0]
        again = recorder.chat(plain, [request], agent="scorer")[0]
        other = recorder.chat(free, [request], agent="scorer")[0]
    assert again.cache_hit and not other.cache_hit  # different parameters: a different call
    assert server.received == 2 and other.text != first.text


def test_extra_body_option_of_run_and_eval_reaches_the_server_merged_over_the_config_file(
        stub, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 29: `--extra-body JSON` on run and eval, over a --config file's extra_body (its keys kept)."""
    from tprompt.cli import main

    server = stub("answer", logprobs=True)
    config = tmp_path / "run.toml"
    config.write_text('[extra_body]\ntop_k = 5\nrepeat_penalty = 1.1\n')
    db = str(tmp_path / "t.db")
    common = ["--model", SPEC, "--base-url", server.base_url, "--config", str(config),
              "--extra-body", '{"repeat_penalty": 1.0}']
    assert main(["--db", db, "run", "--target", "ai2_science", "--steps", "1", "--candidates", "1",
                 "--examples", "2", "--test-examples", "2", *common]) == 0, capsys.readouterr().err
    with EventLog(db, readonly=True) as log:
        assert log.state(log.runs()[0].run_id).config.extra_body == {"top_k": 5, "repeat_penalty": 1.0}
    sent = len(server.bodies)
    assert sent and all(b.get("repeat_penalty") == 1.0 and b.get("top_k") == 5 for b in server.bodies)
    assert main(["--db", db, "eval", "--task", "arc_challenge", "-n", "2", "--prompt", "Answer.", *common]) == 0, \
        capsys.readouterr().err
    assert len(server.bodies) > sent and all(b.get("repeat_penalty") == 1.0 for b in server.bodies[sent:])


@pytest.mark.parametrize(("extra_body", "says"), [
    ({"max_tokens": 4}, "extra_body: max_tokens is set by tprompt itself"),
    ({"messages": []}, "extra_body: messages is set by tprompt itself"),
    ({"logprobs": False}, "extra_body: logprobs is set by tprompt itself"),
    ({"repeat_penalty": float("nan")}, "extra_body: repeat_penalty: nan is not a JSON value"),
])
def test_bad_server_parameters_are_one_clear_line_naming_the_key(extra_body: dict, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_config({**RUN, "base_url": "http://127.0.0.1:8000/v1", "extra_body": extra_body})
    assert says in str(caught.value) and len(str(caught.value).splitlines()) == 1


def test_server_parameters_need_a_served_model() -> None:
    with pytest.raises(ConfigError, match="extra_body is sent to OpenAI-compatible servers"):
        make_config({**RUN, "proposer": "fake", "scorer": "fake", "extra_body": {"repeat_penalty": 1.0}})
    with pytest.raises(UsageError, match="extra_body"):
        get_model("fake", extra_body={"repeat_penalty": 1.0})


def test_a_bad_config_file_is_refused_in_one_line_and_writes_nothing(tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text('base_url = "http://127.0.0.1:9/v1"\n[extra_body]\nrepeat_penalty = 1.0\n'
                      'when = 1979-05-27T07:32:00Z\n')
    db = tmp_path / "t.db"
    done = subprocess.run([sys.executable, "-m", "tprompt.cli", "--db", str(db), "run", "--model", SPEC,
                           "--config", str(config)], capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")})
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode != 0 and "Traceback" not in done.stderr and len(lines) <= 2, done.stderr
    assert str(config) in lines[0] and "extra_body.when" in lines[0] and not db.exists()


def test_a_grid_row_sends_its_server_parameters_to_its_runs(tmp_path: Path) -> None:
    grid = tmp_path / "grid.toml"
    grid.write_text(
        'name = "g"\ntargets = ["arc_challenge"]\nsources = ["ai2_science"]\n'
        '[[models]]\nproposer = "openai:a"\nbase_url = "http://127.0.0.1:8000/v1"\n'
        'extra_body = {repeat_penalty = 1.0, top_k = 1}\n'
        '[[models]]\nproposer = "openai:b"\nbase_url = "http://127.0.0.1:8001/v1"\n'
        '[run]\nsteps = 1\ncandidates = 2\ntop_k = 1\nexamples = 4\ntest_examples = 4\n'
    )
    planned = plan_experiment(load_experiment_file(grid))
    by_model = {r.config.scorer: r.config.extra_body for r in planned.runs}
    assert by_model == {"openai:a": {"repeat_penalty": 1.0, "top_k": 1}, "openai:b": {}}

    grid.write_text(grid.read_text().replace("top_k = 1}", "model = \"x\"}"))
    with pytest.raises(ConfigError) as caught:
        plan_experiment(load_experiment_file(grid))
    assert "model is set by tprompt itself" in str(caught.value) and len(str(caught.value).splitlines()) == 1


def test_the_run_command_records_a_config_files_server_parameters(stub, tmp_path: Path) -> None:
    server = stub("answer", penalty=True)
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"base_url": server.base_url, "extra_body": {"repeat_penalty": 1.0},
                                  "mode": "generate", "steps": 1, "candidates": 1, "top_k": 1, "examples": 2,
                                  "test_examples": 2}))
    db = tmp_path / "t.db"
    done = subprocess.run([sys.executable, "-m", "tprompt.cli", "--db", str(db), "run", "--model", SPEC,
                           "--config", str(config), "--json"], capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")})
    assert done.returncode == 0, done.stderr
    with EventLog(db, readonly=True) as log:
        (run,) = log.runs()
        assert log.state(run.run_id).config.extra_body == {"repeat_penalty": 1.0}
    assert server.received > 0 and all(b.get("repeat_penalty") == 1.0 for b in server.bodies)


def _cli(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``tprompt --db DB ARGS`` in a process of its own (nothing about the server is remembered between two)."""
    return subprocess.run([sys.executable, "-m", "tprompt.cli", "--db", str(db), *args], capture_output=True,
                          text=True, timeout=600, env={k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")})


def test_the_probe_is_retried_after_a_timeout_and_recorded_so_a_resumed_run_does_not_probe_again(
        stub, tmp_path: Path) -> None:
    # Issue 32: the capability probe (does the server return logprobs?) was not retried like other calls: one
    # timeout ended the command before anything was scored; and every process probed again.
    server = stub("answer", logprobs=True, legacy_only=True, probe_hangs=1)
    config = tmp_path / "run.json"
    config.write_text(json.dumps({
        "base_url": server.base_url, "mode": "auto", "request_timeout": 2, "concurrency": 2, "steps": 1,
        "candidates": 2, "top_k": 1, "examples": 4, "test_examples": 4, "extra_body": {"repeat_penalty": 1.0},
    }))
    db = tmp_path / "t.db"
    first = _cli(db, "run", "--model", SPEC, "--config", str(config), "--max-rollouts", "4")
    with EventLog(db, readonly=True) as log:
        (row,) = log.runs()
        state = log.state(row.run_id)
    assert state.status == "paused", first.stderr
    probes = server.probes
    assert probes >= 2  # the first hung past the request timeout; it was asked again
    model = get_model(SPEC, base_url=server.base_url, extra_body={"repeat_penalty": 1.0})
    assert state.config.server_logprobs == {model.revision: True}
    # Each logprob request was one token (the server read the legacy max_tokens).
    assert {n for b, n in zip(server.bodies, server.generated) if b.get("logprobs")} == {1}

    resumed = _cli(db, "resume", row.run_id)
    assert resumed.returncode == 0, resumed.stderr
    with EventLog(db, readonly=True) as log:
        assert log.state(row.run_id).status == "completed"
    assert server.probes == probes  # the run's record answered: no probe from the new process
    scored = [b for b in server.bodies if b.get("logprobs") and b.get("top_logprobs") == 20]
    assert len(scored) > RUN["examples"]  # scored in logprob mode, before and after the resume


def test_a_run_recorded_before_probes_were_runs_and_replays_the_same(stub, tmp_path: Path) -> None:
    # A run whose config has no server_logprobs (written before they were recorded) is probed when it needs to
    # know; `replay --rerun` compares it with a re-run that records the probe, and finds the same events.
    from tprompt.graph.api import rerun_check

    server = stub("answer", logprobs=True)
    db = tmp_path / "t.db"
    with EventLog(db) as log:
        created = next(iter(log.events(_run(db, {"base_url": server.base_url})))).event
        assert created.config.server_logprobs  # today's runs record it
        old = created.model_copy(update={"config": created.config.model_copy(update={"server_logprobs": {}})})
        run_id = log.create_run(old)
        assert Runner(log, run_id).run().status == "completed"
        assert log.state(run_id).config.server_logprobs == {}
        same, why = rerun_check(log, run_id)
    assert same, why
