"""The Transfer-Prompting graph end to end on the fake model: event sequence,
crash and resume, pause and resume, fork onto another target, bad input."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from tprompt.errors import ConfigError, UnknownTask, UsageError
from tprompt.graph import Runner, comparable_events, create_run, fork_run, make_config
from tprompt.stores import EventLog

T = TypeVar("T")

SMALL = dict(
    source_tasks=["ai2_science"],
    target_task="arc_challenge",
    proposer="fake",
    scorer="fake",
    steps=2,
    candidates=3,
    top_k=2,
    examples=4,
    test_examples=5,
    mode="generate",
)





def comparable(log: EventLog, run_id: str) -> list[tuple[str, dict]]:
    """(type, payload) of a run's events without ids, timestamps and pause/resume marks."""
    return comparable_events(log, run_id)


def run_in_process(db: Path | str, **overrides: object) -> tuple[EventLog, str]:
    log = EventLog(db)
    run_id = create_run(log, make_config({**SMALL, **overrides}))
    Runner(log, run_id).run()
    return log, run_id


def tprompt(db: Path, *args: str, check: bool = True, **kw: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TPROMPT_DB": str(db)}
    proc = subprocess.run(
        [sys.executable, "-m", "tprompt.cli", *args], capture_output=True, text=True, env=env, timeout=300, **kw
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"tprompt {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def start_run_process(db: Path, **overrides: object) -> subprocess.Popen[str]:
    """``tprompt run --json`` with the small config in a subprocess (stdout and stderr piped)."""
    return subprocess.Popen(
        [sys.executable, "-m", "tprompt.cli", "run", "--json", *cli_args(**overrides)],
        env={**os.environ, "TPROMPT_DB": str(db)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until(ready: Callable[[], T | None], proc: subprocess.Popen[str], what: str, timeout: float = 120) -> T:
    """The first result of ``ready()`` that is not None, polled until there is one.

    The timeout only bounds a hang; a process that exits first fails the wait at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        got = ready()
        if got is not None:
            return got
        if proc.poll() is not None:
            raise AssertionError(f"the process exited ({proc.returncode}) before {what}")
        assert time.monotonic() < deadline, f"not {what} after {timeout} s"
        time.sleep(0.02)


def wait_for_row(db: Path, sql: str, proc: subprocess.Popen[str], timeout: float = 120) -> tuple:
    """The first row ``sql`` returns from ``db``, polled read-only until it exists.

    The timeout only bounds a hang; a process that exits first fails the wait at once.
    """

    def row() -> tuple | None:
        if not db.exists():
            return None
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
                return conn.execute(sql).fetchone()
        except sqlite3.OperationalError:  # the schema is not there yet
            return None

    return wait_until(row, proc, f"{sql!r} returned a row", timeout)


def lines(path: Path) -> int:
    """Lines in the file ``path`` (0 while it does not exist)."""
    return len(path.read_text().splitlines()) if path.exists() else 0


def killed_in_a_call(db: Path, gate: Path) -> subprocess.Popen[str]:
    """``tprompt run`` of the small config, SIGKILLed after its first candidate.scored while its next model call
    waits at ``gate`` (so the run is left "running", with work in flight): the dead process."""
    gate.touch()
    proc = start_run_process(db, scorer=f"fake:gate={gate}")
    try:
        wait_for_row(db, "SELECT 1 FROM events WHERE type = 'candidate.scored'", proc)
        gate.unlink()  # the next model call waits
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    return proc


def resume_killed(db: Path) -> tuple[EventLog, str]:
    """The one run of ``db``, killed before it completed, resumed by ``tprompt resume`` to completion: its log and id."""
    log = EventLog(db)
    (run,) = log.runs()
    assert log.state(run.run_id).status != "completed"
    assert json.loads(tprompt(db, "resume", run.run_id, "--json").stdout)["status"] == "completed"
    return log, run.run_id


def released(proc: subprocess.Popen[str], gate: Path) -> tuple[dict, str]:
    """Open ``gate`` for a ``tprompt run --json`` process held there and let it exit 0: its result and stderr."""
    gate.touch()
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    return json.loads(stdout), stderr


def cli_args(**overrides: object) -> list[str]:
    cfg = {**SMALL, **overrides}
    args = []
    for task in cfg["source_tasks"]:
        args += ["--source", task]
    args += ["--target", cfg["target_task"], "--proposer", cfg["proposer"], "--scorer", cfg["scorer"]]
    for key in ("steps", "candidates", "top_k", "examples", "test_examples", "mode"):
        args += ["--" + key.replace("_", "-"), str(cfg[key])]
    return args


def test_run_event_sequence_follows_the_config(tmp_path: Path) -> None:
    log, run_id = run_in_process(tmp_path / "t.db")
    events = list(log.events(run_id))
    types = [e.type for e in events]
    assert types[0] == "run.created" and types[-1] == "run.completed"
    for stage in ("source", "target"):
        proposed = [e.event for e in events if e.type == "step.proposed" and e.event.stage == stage]
        assert [p.step for p in proposed] == [0, 1, 2]
        for p in proposed:
            scored = [
                e.event for e in events if e.type == "candidate.scored" and e.event.stage == stage and e.event.step == p.step
            ]
            assert sorted(s.prompt_id for s in scored) == sorted(c.prompt_id for c in p.candidates)
            assert all(s.n_examples == SMALL["examples"] for s in scored)
            if p.step > 0:
                assert len(p.candidates) + len(p.rejected) == SMALL["candidates"]
        completed = [e.event for e in events if e.type == "step.completed" and e.event.stage == stage]
        assert [c.step for c in completed] == [0, 1, 2]
    assert types.count("stage.completed") == 2
    transfer = [e.event for e in events if e.type == "transfer.selected"]
    assert len(transfer) == 1 and 1 <= len(transfer[0].prompts) <= SMALL["top_k"]
    tested = [e.event for e in events if e.type == "prompt.tested"]
    assert [t.role for t in tested] == ["original", "best_source", "best_target"]
    assert all(t.task == "arc_challenge" and t.split == "test" and t.n_examples == 5 for t in tested)
    state = log.state(run_id)
    assert state.status == "completed"
    # The target stage starts from the transferred prompts.
    assert [c.prompt_id for c in state.transferred] == list(state.top_k["source"])[: SMALL["top_k"]]
    seqs = [e.seq for e in events]
    assert seqs == list(range(1, len(seqs) + 1))


def test_second_identical_run_makes_no_model_calls(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    log, first = run_in_process(db)
    log2 = EventLog(db)
    second = create_run(log2, make_config(SMALL))
    runner = Runner(log2, second)
    runner.run()
    assert runner.recorder.model_calls == 0
    assert comparable(log, first) == comparable(log2, second)


def test_racing_uses_fewer_scorer_calls(tmp_path: Path) -> None:
    _, full_id = run_in_process(tmp_path / "a.db", examples=8, candidates=4)
    log, race_id = run_in_process(tmp_path / "b.db", examples=8, candidates=4, budget="racing")
    full = EventLog(tmp_path / "a.db").state(full_id)
    race = log.state(race_id)
    assert race.status == "completed"
    for stage in ("source", "target"):
        assert race.scorer_calls[stage] < full.scorer_calls[stage]
    rungs = {s.rung for s in race.scores if s.step > 0}
    assert rungs == {0, 1, 2}
    for step in (1, 2):
        rows = race.step_scores("source", step)
        finalists = {s.prompt_id for s in rows if s.rung == 2}
        assert len(finalists) == 1
        assert all(s.eliminated == (s.prompt_id not in finalists) for s in rows)


def test_transfer_off_is_the_target_only_baseline(tmp_path: Path) -> None:
    log, run_id = run_in_process(tmp_path / "t.db", transfer=False)
    types = [e.type for e in log.events(run_id)]
    assert "transfer.selected" not in types
    state = log.state(run_id)
    assert state.stages_completed == ("target",)
    assert set(state.tested) == {"original", "best_target"}


# Scorer requests answered before the kill (of 75): none; in source step 1, its first candidate answered; target; test
@pytest.mark.parametrize("answered", [0, 9, 30, 70])
def test_sigkill_then_resume_equals_uninterrupted(tmp_path: Path, answered: int) -> None:
    gate, sent = tmp_path / "gate", tmp_path / "sent"
    # The scorer answers `answered` requests, then holds the next one at the gate until the test opens it. The same
    # spec (the same gate path) in both runs: their configs, and so their events, can be compared.
    scorer = f"fake:gate={gate},gate_after={answered},calls={sent}"
    gate.touch()
    reference_log, reference = run_in_process(tmp_path / "ref.db", scorer=scorer)
    assert answered < lines(sent)  # the hold falls inside the run
    gate.unlink()
    sent.unlink()
    db = tmp_path / "crash.db"
    proc = start_run_process(db, scorer=scorer)
    try:
        # The kill waits on state: the held request was sent (the fake writes its line before the gate), so the
        # process stands inside that call with the answers before it recorded.
        wait_until(lambda: lines(sent) > answered or None, proc, f"request {answered + 1} was sent")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    log = EventLog(db)
    (run,) = log.runs()
    assert log.state(run.run_id).status == "running"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        assert conn.execute("SELECT count(*) FROM transcripts WHERE agent = 'scorer'").fetchone() == (answered,)
    gate.touch()
    out = tprompt(db, "resume", run.run_id, "--json")
    assert json.loads(out.stdout)["status"] == "completed"
    assert comparable(log, run.run_id) == comparable(reference_log, reference)


def test_pause_and_resume_equals_uninterrupted(tmp_path: Path) -> None:
    reference_log, reference = run_in_process(tmp_path / "ref.db")
    log = EventLog(tmp_path / "p.db")
    run_id = create_run(log, make_config(SMALL))
    calls = {"n": 0}

    def pause_after_a_while() -> bool:
        calls["n"] += 1
        return calls["n"] == 6

    runner = Runner(log, run_id, pause_check=pause_after_a_while)
    state = runner.run()
    assert state.status == "paused"
    assert [e.type for e in log.events(run_id)][-1] == "run.paused"
    resumed = Runner(log, run_id).run()
    assert resumed.status == "completed"
    assert comparable(log, run_id) == comparable(reference_log, reference)


def test_ctrl_c_pauses_and_exits_zero(tmp_path: Path) -> None:
    db, gate = tmp_path / "c.db", tmp_path / "gate"
    # Every model call waits for the gate: the run is in flight until the test opens it.
    proc = start_run_process(db, scorer=f"fake:gate={gate}")
    try:
        # stage.started is written by the graph, so Ctrl-C's handler is installed by then.
        wait_for_row(db, "SELECT 1 FROM events WHERE type = 'stage.started'", proc)
        proc.send_signal(signal.SIGINT)
        result, stderr = released(proc, gate)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert result["status"] == "paused"
    assert "Traceback" not in stderr
    out = tprompt(db, "resume", result["run_id"], "--json")
    assert json.loads(out.stdout)["status"] == "completed"


def test_fork_from_source_prompt_onto_another_target(tmp_path: Path) -> None:
    log, parent = run_in_process(tmp_path / "t.db")
    before = comparable(log, parent)
    parent_state = log.state(parent)
    prompt = parent_state.history("source")[0].prompt_id  # not the best: any source prompt
    child = fork_run(log, parent, from_prompt_id=prompt, overrides={"target_task": "mmlu/anatomy"})
    Runner(log, child).run()
    child_state = log.state(child)
    assert child_state.status == "completed"
    assert child_state.target_task == "mmlu/anatomy"
    assert [c.prompt_id for c in child_state.transferred] == [prompt]
    fork_point = child_state.parent_seq
    parent_events = [(e.seq, e.event_id) for e in log.events(parent, upto=fork_point)]
    child_events = list(log.events(child))
    assert [(e.seq, e.event_id) for e in child_events[:fork_point]] == parent_events
    assert all(e.run_id == child for e in child_events[fork_point:])
    assert child_events[fork_point].type == "run.forked"
    assert comparable(log, parent) == before  # the parent is untouched


def test_fork_at_seq_continues_from_that_state(tmp_path: Path) -> None:
    log, parent = run_in_process(tmp_path / "t.db")
    mid = next(e.seq for e in log.events(parent) if e.type == "step.completed" and e.event.step == 1)
    child = fork_run(log, parent, at_seq=mid, overrides={"steps": 3})
    state = Runner(log, child).run()
    assert state.status == "completed"
    source_steps = [e.event.step for e in log.events(child) if e.type == "step.completed" and e.event.stage == "source"]
    assert source_steps == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"target_task": "no_such_task"}, UnknownTask),
        ({"scorer": "nonsense-model"}, UsageError),
        ({"steps": 0}, ConfigError),
        ({"steps": -2}, ConfigError),
        ({"top_k": 50}, ConfigError),
        ({"stpes": 2}, ConfigError),
    ],
)
def test_bad_input_fails_before_anything_is_written(tmp_path: Path, overrides: dict, error: type) -> None:
    log = EventLog(tmp_path / "t.db")
    with pytest.raises(error):
        create_run(log, make_config({**SMALL, **overrides}))
    assert log.runs() == []


def test_cli_bad_input_one_line_and_nothing_written(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    cfg = tmp_path / "run.toml"
    cfg.write_text('stpes = 3\nscorer = "fake"\n')
    for args in (
        ["run", "--model", "fake", "--target", "nope"],
        ["run", "--model", "fake", "--steps", "0"],
        ["run", "--model", "fake", "--top-k", "99"],
        ["run", "--model", "what:ever"],
        ["run", "--config", str(cfg)],
    ):
        proc = tprompt(db, *args, check=False)
        assert proc.returncode in (1, 2), args
        assert "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert proc.stdout == ""
    if db.exists():
        assert EventLog(db).runs() == []
    assert "did you mean 'steps'" in tprompt(db, "run", "--config", str(cfg), check=False).stderr


def test_cli_run_show_replay_json(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    out = tprompt(db, "run", "--json", *cli_args())
    data = json.loads(out.stdout)
    assert data["status"] == "completed"
    assert [r["role"] for r in data["table"]] == ["original", "best_source", "best_target"]
    assert {"accuracy", "ifr", "ece", "auroc", "pr_p", "pr_n", "objective"} <= set(data["table"][0])
    show = json.loads(tprompt(db, "show", data["run_id"], "--json").stdout)
    assert show["scorer_calls"]["source"] > 0 and show["transfer_gain"] is not None
    replay = json.loads(tprompt(db, "replay", data["run_id"], "--to", "5", "--json").stdout)
    assert replay["last_seq"] == 5


def test_scorer_budget_caps_training_calls(tmp_path: Path) -> None:
    log, run_id = run_in_process(tmp_path / "t.db", steps=50, scorer_budget=40)
    state = log.state(run_id)
    assert state.status == "completed"
    used = state.scorer_calls["source"] + state.scorer_calls.get("target", 0)
    assert used <= 40
    assert used > 40 - SMALL["examples"]  # stopped only when another candidate would not fit


def test_replay_rerun_reproduces_the_events(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    log, run_id = run_in_process(db)
    size = db.stat().st_size
    proc = tprompt(db, "replay", run_id, "--rerun", "--json")
    data = json.loads(proc.stdout)
    assert data["same"] is True, data
    assert len(EventLog(db).runs()) == 1  # the scratch copy took the re-run, not the database
    assert db.stat().st_size == size
    from tprompt.graph import rerun_check

    fork = fork_run(log, run_id, at_seq=4, overrides={"steps": 1})
    Runner(log, fork).run()
    assert rerun_check(log, fork)[0] is True
    # A run whose recorded events are not what its config produces does not match.
    forged = create_run(log, make_config(SMALL))
    recorded = [e.event for e in log.events(run_id)][1:]
    tampered = next(i for i, ev in enumerate(recorded) if ev.type == "candidate.scored")
    recorded[tampered] = recorded[tampered].model_copy(update={"objective": 0.987654})
    log.append(forged, recorded)
    same, why = rerun_check(log, forged)
    assert same is False and "0.987654" in why


def test_fork_transcript_reads_through_parent_calls_up_to_the_fork(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    log, parent = run_in_process(db)
    point = next(e.seq for e in log.events(parent) if e.type == "step.completed" and e.event.step == 1)
    child = fork_run(log, parent, at_seq=point, overrides={"steps": 3})
    Runner(log, child).run()
    parent_calls = json.loads(tprompt(db, "transcript", parent, "--json").stdout)
    child_calls = json.loads(tprompt(db, "transcript", child, "--json").stdout)
    assert all(c["seq"] is not None for c in parent_calls)
    inherited = [c for c in child_calls if c["run_id"] == parent]
    assert sorted(c["call_id"] for c in inherited) == sorted(c["call_id"] for c in parent_calls if c["seq"] <= point)
    assert any(c["run_id"] == child and c["agent"] == "proposer" for c in child_calls)


def test_parallel_scoring_writes_the_same_events_as_serial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    serial_log, serial = run_in_process(tmp_path / "a.db", scorer="fake:delay=0.01")
    # Treat the fake like an API backend: candidates are scored concurrently.
    monkeypatch.setattr("tprompt.config.specs.IN_PROCESS_KINDS", ("smollm2", "hf"))
    parallel_log, parallel = run_in_process(tmp_path / "b.db", scorer="fake:delay=0.01", concurrency=3)
    # Everything but the config in run.created (concurrency differs) is the same.
    assert comparable(parallel_log, parallel)[1:] == comparable(serial_log, serial)[1:]


def test_error_messages_are_literal_text(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    proc = tprompt(db, "run", "--model", "fake", "--source", "[bold]x[/]", check=False)
    assert proc.returncode == 2 and "'[bold]x[/]'" in proc.stderr
    proc = tprompt(db, "run", "--model", "openai:gpt-4o-mini", check=False)
    if "langchain-openai" in proc.stderr:  # the extra is not installed here
        assert "tprompt[openai]" in proc.stderr


def test_pause_command_from_another_terminal(tmp_path: Path) -> None:
    db, gate = tmp_path / "p.db", tmp_path / "gate"
    proc = start_run_process(db, scorer=f"fake:gate={gate}")
    try:
        wait_for_row(db, "SELECT 1 FROM events WHERE type = 'stage.started'", proc)
        (run_id,) = wait_for_row(db, "SELECT run_id FROM runs WHERE status = 'running'", proc)
        asked = tprompt(db, "pause", run_id)  # the run is held at the gate until now
        assert "pause requested" in asked.stderr
        result, _ = released(proc, gate)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert result["status"] == "paused"
    assert tprompt(db, "pause", run_id, check=False).returncode == 2  # nothing to pause now
    assert json.loads(tprompt(db, "resume", run_id, "--json").stdout)["status"] == "completed"
