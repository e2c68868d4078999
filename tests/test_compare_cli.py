"""`tprompt compare RUN RUN...`: runs side by side on one held-out split, from their recorded test results."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from conftest import cli_in_process as cli
from conftest import run_created

from tprompt.graph import Runner, create_run, make_config
from tprompt.stores import EventLog


def contents(db: Path) -> list[tuple]:
    """Every run and event row (the file's bytes move when a reader checkpoints the WAL)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return [*conn.execute("SELECT * FROM runs ORDER BY run_id"), *conn.execute("SELECT * FROM events ORDER BY 1, 2")]


def finished(log: EventLog, target: str, steps: int, seed: int = 0) -> str:
    cfg = dict(target_task=target, transfer=False, proposer="fake", scorer="fake", steps=steps, candidates=2,
               examples=3, test_examples=4, mode="generate", seed=seed)
    run_id = create_run(log, make_config(cfg))
    Runner(log, run_id).run()
    return run_id


@pytest.fixture
def runs(tmp_path: Path) -> tuple[Path, list[str]]:
    db = tmp_path / "t.db"
    with EventLog(db) as log:
        ids = [finished(log, "arc_challenge", 1), finished(log, "arc_challenge", 2), finished(log, "medqa_usmle", 1)]
        ids.append(log.create_run(run_created(target_task="arc_challenge"), run_id="r-untested"))
    return db, ids


def test_compare_puts_each_runs_best_test_result_side_by_side(runs, capsys) -> None:
    db, (a, b, _other, untested) = runs
    with EventLog(db, readonly=True) as log:
        want = {r: log.state(r).tested for r in (a, b)}
    before = contents(db)
    code, out, err = cli(capsys, "--db", str(db), "compare", a, b, untested, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["target_task"] == "arc_challenge"
    got = {r["run_id"]: r for r in data["runs"]}
    for run in (a, b):
        best = want[run]["best_target"]
        assert got[run]["tested"]["metrics"] == best.metrics and got[run]["tested"]["objective"] == best.objective
        assert got[run]["tested"]["prompt_id"] == best.prompt_id
        assert got[run]["tested"]["original_objective"] == want[run]["original"].objective
    assert got[untested]["tested"] is None
    code, out, err = cli(capsys, "--db", str(db), "compare", a, b, untested)
    assert code == 0, err
    header = next(line for line in out.splitlines() if "objective" in line and "run" in line)
    assert header.split()[:2] == ["run", "accuracy"]
    for run in (a, b):
        row = next(line for line in out.splitlines() if line.strip().startswith(run + " "))
        assert row.split()[-1] == f"{want[run]['best_target'].objective:.3f}"
    assert f"{untested}: no test result yet (status created)" in out
    assert contents(db) == before  # read only: no call, nothing written


@pytest.mark.parametrize(
    "which, says",
    [
        ((0, 2), "the runs have different target tasks"),
        ((0,), "compare needs at least two runs"),
        ((0, 0), "is given twice"),
        ((0, "r-nope"), "no run 'r-nope'"),
    ],
)
def test_compare_bad_input_is_one_line(runs, capsys, which, says) -> None:
    db, ids = runs
    before = contents(db)
    args = [ids[w] if isinstance(w, int) else w for w in which]
    code, out, err = cli(capsys, "--db", str(db), "compare", *args)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and err.startswith("error:") and says in err
    assert contents(db) == before


def test_compare_notes_runs_that_drew_different_test_rows(tmp_path: Path, capsys) -> None:
    db = tmp_path / "t.db"
    with EventLog(db) as log:
        a, b = finished(log, "arc_challenge", 1), finished(log, "arc_challenge", 1, seed=1)
    code, _out, err = cli(capsys, "--db", str(db), "compare", a, b)
    assert code == 0 and "note: the runs drew different test rows" in err
