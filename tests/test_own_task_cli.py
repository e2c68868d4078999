"""Optimizing only the user's own task from the CLI, with honest call counts (issue 29)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tprompt.cli import main


def write_dates(path: Path, n: int = 30) -> Path:
    rows = [{"question": f"Her birthday is on day {i} of April, 1995.", "reference": f"1995-04-{i:02d}"}
            for i in range(1, n + 1)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[dict, str]:
    capsys.readouterr()
    assert main(list(argv)) == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err


def test_target_alone_has_no_source_stage_and_call_counts_equal_the_transcripts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dates = write_dates(tmp_path / "dates.jsonl")  # 30 rows: 6 train, 24 test
    db = str(tmp_path / "t.db")
    capsys.readouterr()
    assert main(["--db", db, "run", "--target", str(dates), "--model", "fake", "--steps", "1", "--candidates", "2",
                 "--examples", "16", "--test-examples", "5"]) == 0
    err = capsys.readouterr().err
    # was: no word that 16 examples were asked of a task with 6 training rows
    assert f"warning: task {dates} has 6 training row(s); each candidate is scored on those 6, not on --examples 16" in err
    (run_id,) = [w for w in err.split() if w.startswith("r-")][:1]
    shown, _ = run_json(capsys, "--db", db, "show", run_id, "--json")
    # was: a source stage on ai2_science, with the user's metrics applied to it, and source_tasks ['ai2_science']
    assert shown["source_tasks"] == [] and shown["config"]["source_tasks"] == [] and not shown["config"]["transfer"]
    assert shown["best"]["source"] is None
    with sqlite3.connect(db) as conn:
        made = dict(conn.execute("SELECT step LIKE 'test%', count(*) FROM transcripts WHERE agent = 'scorer' "
                                 "AND NOT cache_hit GROUP BY step LIKE 'test%'").fetchall())
    # was: "target": 48 (16 x 3 prompts) where the transcripts hold 18 (6 x 3)
    assert shown["scorer_calls"]["target"] == made[0] == 6 * 3
    assert shown["scorer_calls"]["test"] == made[1]
    assert "fork" not in err.splitlines()[-1]  # a target-only run has no source prompts to transfer
    capsys.readouterr()
    assert main(["--db", db, "show", run_id]) == 0
    text = capsys.readouterr().out
    # was: "transfer gain on the test split" for a run that transferred nothing
    assert "transfer gain" not in text and "gain (target-only, no transfer) on the test split" in text


def test_target_only_flag_with_a_source_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "t.db"
    code = main(["--db", str(db), "run", "--target", "arc_challenge", "--source", "ai2_science", "--target-only",
                 "--model", "fake"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--target-only runs no source stage" in err
    assert not db.exists()


def test_target_only_flag_drops_sources_of_a_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "run.toml"
    config.write_text('source_tasks = ["ai2_science"]\ntarget_task = "arc_challenge"\n')
    shown, _ = run_json(capsys, "--db", str(tmp_path / "t.db"), "run", "--config", str(config), "--target-only",
                        "--model", "fake", "--steps", "1", "--candidates", "1", "--examples", "2", "--test-examples",
                        "2", "--json")
    assert shown["status"] == "completed" and [r["role"] for r in shown["table"]] == ["original", "best_target"]


def test_fork_of_a_target_only_run_without_at_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "t.db")
    done, _ = run_json(capsys, "--db", db, "run", "--target", "arc_challenge", "--model", "fake", "--steps", "1",
                       "--candidates", "1", "--examples", "2", "--test-examples", "2", "--json")
    code = main(["--db", db, "fork", done["run_id"], "--target", "medqa_usmle"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"run {done['run_id']} is target-only: it has no source stage to transfer from" in err
    assert f"tprompt --db {db} events RUN" in err  # the hint names this database


def test_scorer_calls_count_each_request_once_in_training_and_test(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`show`'s scorer_calls are the requests the run made, each once: racing's re-asked rows (training) and a
    prompt tested again under another role (test) are cache hits, counted in neither (was: test counted them)."""
    import hashlib
    import importlib

    from tprompt.evaluator import metric_worker

    dates = write_dates(tmp_path / "dates.jsonl")
    module = f"const_{hashlib.sha1(str(tmp_path).encode()).hexdigest()[:10]}"
    (tmp_path / f"{module}.py").write_text("def one(example, answer):\n    return 1.0\n")
    importlib.invalidate_caches()
    metric_worker.reset()
    monkeypatch.chdir(tmp_path)
    db = str(tmp_path / "t.db")
    # every prompt ties: the original stays the best, so the test asks the same requests twice
    state, _ = run_json(capsys, "--db", db, "run", "--target", str(dates), "--model", "fake", "--steps", "2",
                        "--candidates", "2", "--examples", "6", "--test-examples", "4", "--budget", "racing",
                        "--metric", f"{module}:one", "--weight", "one=1", "--weight", "rouge_l=0",
                        "--weight", "token_f1=0", "--json")
    roles = {r["role"]: r["prompt_id"] for r in state["table"]}
    assert roles["original"] == roles["best_target"]
    shown, _ = run_json(capsys, "--db", db, "show", state["run_id"], "--json")
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT step LIKE 'test%', cache_hit, count(*) FROM transcripts WHERE agent = 'scorer' "
                            "GROUP BY 1, 2").fetchall()
    made = {(test, hit): n for test, hit, n in rows}
    assert made[(0, 1)] > 0 and made[(1, 1)] == 4  # racing re-asks; the second test of the same prompt
    assert shown["scorer_calls"] == {"target": made[(0, 0)], "test": made[(1, 0)]} and made[(1, 0)] == 4
