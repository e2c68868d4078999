"""``tprompt transcript``: listing, filtering, one call in full, forks read through their parents."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_created

from tprompt.cli import main
from tprompt.models import ChatRequest, OptionsRequest, Recorder
from tprompt.models.fake import FakeBackend
from tprompt.stores import EventLog, StageStarted


def make_runs(db: Path) -> tuple[str, str, dict]:
    """A parent run with calls at seqs 2 and 3, and a fork at seq 2 with calls of its own."""
    ids: dict = {}
    with EventLog(db) as log:
        parent = log.create_run(run_created("parent"), run_id="r-parent01")
        log.append(parent, [StageStarted(stage="source", tasks=["source"])])
        log.append(parent, [StageStarted(stage="target", tasks=["target"])])
        with Recorder(log, run_id=parent) as rec:
            ids["p2"] = rec.chat(FakeBackend("fake"), [ChatRequest(messages=(("user", "Propose <INS></INS>"),))],
                                 agent="proposer", seq=2, step="source/1")[0].call_id
            ids["p3"] = rec.chat(FakeBackend("fake"), [ChatRequest(messages=(("user", "late question\nA) x\nB) y"),))],
                                 agent="scorer", seq=3)[0].call_id
        fork = log.fork(parent, 2, config={}, target_task="other", run_id="r-fork0001")
        with Recorder(log, run_id=fork) as rec:
            ids["f3"] = rec.option_probs(FakeBackend("fake"), [OptionsRequest(messages=(("user", "q"),), options=("A", "B"))],
                                         agent="scorer", seq=3)[0].call_id
    return parent, fork, ids


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_listing_json_includes_ancestor_calls_up_to_the_fork(db_path: Path, capsys):
    parent, fork, ids = make_runs(db_path)
    code, out, _ = run_cli(capsys, "--db", str(db_path), "transcript", fork, "--json")
    assert code == 0
    rows = json.loads(out)
    assert [r["call_id"] for r in rows] == [ids["p2"], ids["f3"]]
    assert rows[0]["run_id"] == parent and rows[1]["kind"] == "options"
    code, out, _ = run_cli(capsys, "--db", str(db_path), "transcript", parent, "--json")
    assert [r["call_id"] for r in json.loads(out)] == [ids["p2"], ids["p3"]]


def test_agent_filter_and_table(db_path: Path, capsys):
    parent, _, ids = make_runs(db_path)
    code, out, _ = run_cli(capsys, "--db", str(db_path), "transcript", parent, "--agent", "scorer", "--json")
    assert [r["call_id"] for r in json.loads(out)] == [ids["p3"]]
    code, out, _ = run_cli(capsys, "--db", str(db_path), "transcript", "r-par")
    assert code == 0 and ids["p2"] in out and "proposer" in out and "2 calls" in out


def test_one_call_in_full(db_path: Path, capsys):
    _, fork, ids = make_runs(db_path)
    code, out, _ = run_cli(capsys, "--db", str(db_path), "transcript", fork, "--call", ids["p2"], "--json")
    data = json.loads(out)
    assert code == 0
    assert data["request"]["messages"] == [["user", "Propose <INS></INS>"]]
    assert data["response"].startswith("<INS>")
    code, out, _ = run_cli(capsys, "--db", str(db_path), "transcript", fork, "--call", ids["f3"])
    assert code == 0 and "Answer: A:" in out
    code, out, _ = run_cli(capsys, "--db", str(db_path), "transcript", fork, "--call", ids["p3"])
    assert code == 2  # the parent's call after the fork point is not in the fork's history


def test_unknown_run_and_call(db_path: Path, capsys):
    parent, _, _ = make_runs(db_path)
    code, out, err = run_cli(capsys, "--db", str(db_path), "transcript", "r-nothere")
    assert code == 2 and out == "" and "no run" in err
    code, out, err = run_cli(capsys, "--db", str(db_path), "transcript", parent, "--call", "c-nope")
    assert code == 2 and "no call" in err
