"""`tprompt eval` is `run`'s scorer: the same task, template, metric, judge and mode options, the same code path
and columns as a run's held-out test, several prompts side by side (issue 29)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import cli_in_process as cli

DATES = Path(__file__).resolve().parents[1] / "examples" / "dates"


@pytest.fixture
def dates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The dates example (a JSONL with a description header, a template, a metric module) in a fresh folder."""
    for name in ("dates.jsonl", "template.json", "datemetrics.py"):
        shutil.copy(DATES / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_eval_of_a_runs_prompts_gives_the_runs_test_table_from_the_cache(dates: Path, capsys) -> None:
    """The user's template, metric and judge: eval scores the run's original and best prompts exactly as the
    run's held-out test did (same metrics, judge columns, objective), with zero model calls."""
    db = str(dates / "t.db")
    scoring = ("--metric", "datemetrics:iso_date", "--judge", "fake", "--model", "fake", "--seed", "3")
    code, out, err = cli(capsys, "--db", db, "run", "--target", "dates.jsonl", "--prompt-file", "template.json",
                         *scoring, "--steps", "1", "--candidates", "2", "--examples", "4", "--test-examples", "5",
                         "--json")
    assert code == 0, err
    done = json.loads(out)
    table = {r["role"]: r for r in done["table"]}
    code, out, err = cli(capsys, "--db", db, "export", done["run_id"], "--format", "json", "--out", "best.json")
    assert code == 0, err
    code, out, err = cli(capsys, "--db", db, "eval", "--task", "dates.jsonl", "--prompt-file", "template.json",
                         "--prompt-file", "best.json", *scoring, "-n", "5", "--json")
    assert code == 0, err
    data = json.loads(out)
    original, best = data["results"]
    assert [original["label"], best["label"]] == ["template.json", "best.json"]
    assert original["template"] and best["template"]
    for role, got in (("original", original), ("best_target", best)):
        want = table[role]
        assert got["prompt_id"] == want["prompt_id"]
        assert got["objective"] == want["objective"]
        assert got["metrics"] == {k: want[k] for k in got["metrics"]}
        assert got["counts"]["model_calls"] == 0 and got["counts"]["cache_hits"] == 5
        assert got["counts"]["judge_calls"] == 5 and got["judge"]["judge"] == "fake"
    metrics = set(original["metrics"])
    assert "iso_date" in metrics and any(m.startswith("judge_") for m in metrics)
    # a free-text task: no accuracy or calibration columns, as in the run's table
    assert not metrics & {"accuracy", "ifr", "ece", "auroc", "brier"}
    assert data["metrics"] == original["metrics"] and data["objective"] == original["objective"]  # the first's fields


def test_several_prompts_side_by_side_and_json_gives_the_same_numbers(tmp_path: Path, capsys) -> None:
    db = str(tmp_path / "t.db")
    prompt_file = tmp_path / "p.txt"
    prompt_file.write_text("Think, then answer.\n")
    args = ("--db", db, "eval", "--task", "mmlu/anatomy", "--prompt", "Answer carefully.", "--prompt", "Be brief.",
            "--prompt-file", str(prompt_file), "--model", "fake", "-n", "6")
    code, out, err = cli(capsys, *args)
    assert code == 0, err
    code, js, err = cli(capsys, *args, "--json")
    assert code == 0, err
    results = json.loads(js)["results"]
    assert [r["label"] for r in results] == ["prompt 1", "prompt 2", str(prompt_file)]
    assert all(r["counts"]["model_calls"] == 0 for r in results)  # the table's run cached every call
    lines = out.splitlines()
    header = next(line for line in lines if "objective" in line)
    assert header.split()[:3] == ["prompt", "accuracy", "ifr"]
    for r in results:
        row = next(line for line in lines if line.strip().startswith(r["label"] + " ") and "." in line)
        assert row.split()[-1] == f"{r['objective']:.3f}"
        assert f"{r['metrics']['accuracy']:.3f}" in row
    # each prompt on the same examples
    assert len({tuple(a["example_id"] for a in r["answers"]) for r in results}) == 1


def test_eval_with_a_users_metric_on_a_free_text_task(dates: Path, capsys) -> None:
    code, out, err = cli(capsys, "--db", "t.db", "eval", "--task", "dates.jsonl", "--prompt-file", "template.json",
                         "--metric", "datemetrics:iso_date", "--model", "fake", "-n", "4")
    assert code == 0, err
    header = next(line for line in out.splitlines() if "objective" in line)
    # was: accuracy 0.000, IFR 1.000, ECE 0.500 on a free-text task, and `No such option: --metric`
    assert header.split() == ["prompt", "iso_date", "objective"]


@pytest.mark.parametrize(
    "args, says",
    [
        (("--metric", "nosuchmodule_xyz:fn"), "nosuchmodule_xyz"),
        (("--metric", "no_such_metric"), "no_such_metric"),
        (("--rubric", "rubric.toml"), "a rubric is given but no judge"),
        (("--judge", "nosuchbackend:zzz"), "nosuchbackend"),
        (("--weight", "rouge_l"), "bad weight 'rouge_l'"),
        (("--weight", "nosuch=1"), "nosuch"),
        (("--prompt", "a", "--prompt", " "), "--prompt 2 of 2 is empty"),
        (("--prompt-file", "missing.json"), "cannot read prompt file missing.json"),
        (("--prompt-file", "bad_template.json"), "the template names {nosuchfield}, which row"),
    ],
)
def test_eval_bad_scoring_options_one_line_nothing_written(dates: Path, capsys, args, says) -> None:
    (dates / "rubric.toml").write_text('[[criteria]]\nname = "brevity"\ndescription = "short"\n')
    (dates / "bad_template.json").write_text(json.dumps(
        {"messages": [{"role": "system", "content": "Extract."}, {"role": "user", "content": "Text: {nosuchfield}"}]}))
    code, out, err = cli(capsys, "--db", "t.db", "eval", "--task", "dates.jsonl", "--model", "fake", "-n", "2", *args)
    assert code == 2, err
    assert out == "" and len(err.strip().splitlines()) == 1 and err.startswith("error:") and says in err, err
    assert "Traceback" not in err
    assert not (dates / "t.db").exists()


def test_a_judge_eval_cannot_read_stops_at_its_first_batch(dates: Path, capsys) -> None:
    """As in a run: a judge none of whose first replies parse stops eval there, in one line."""
    import sqlite3

    code, out, err = cli(capsys, "--db", "t.db", "eval", "--task", "dates.jsonl", "--prompt-file", "template.json",
                         "--judge", "fake:garble=1", "--model", "fake", "-n", "12")
    assert code != 0 and out == "" and len(err.strip().splitlines()) == 1
    assert "judge fake:garble=1: none of its first 8 replies gave a score" in err
    assert "tprompt stopped before judging more" in err and "(evaluate with another judge: --judge SPEC)" in err
    with sqlite3.connect(dates / "t.db") as conn:
        calls = dict(conn.execute("SELECT agent, count(*) FROM transcripts GROUP BY agent").fetchall())
    assert calls == {"scorer": 12, "judge": 8}  # not 12 judge calls
