"""User mistakes get one line, a non-zero exit and nothing written (issue 12, item 6)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from test_graph import tprompt

from tprompt.errors import BadTaskFile
from tprompt.evaluator import load_task


def one_line(proc, code: int | None = None) -> str:  # type: ignore[no-untyped-def]
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert proc.returncode != 0 if code is None else proc.returncode == code
    return lines[0]


@pytest.mark.parametrize("command", [["runs"], ["show", "r-x"], ["ui"], ["run", "--model", "fake"]])
def test_a_directory_as_database(tmp_path: Path, command: list[str]) -> None:
    line = one_line(tprompt(tmp_path, *command, check=False))
    assert "is a directory" in line


@pytest.mark.parametrize("command", [["ui"], ["runs"], ["show", "r-x"], ["events", "r-x"], ["transcript", "r-x"]])
def test_readers_do_not_create_a_database(tmp_path: Path, command: list[str]) -> None:
    db = tmp_path / "typo.db"
    proc = tprompt(db, *command, check=False)
    if command == ["runs"] and proc.returncode == 0:  # listing nothing is an answer too
        assert "does not exist" in " ".join(proc.stderr.split())
    else:
        assert "typo.db" in one_line(proc)
    assert not db.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--model", "fake:delay=-1"], "delay"),
        (["--model", ""], "empty model spec"),
        (["--model", "fake", "--scorer", " "], "scorer is an empty model spec"),
        (["--model", "fake", "--target", "nope"], "unknown task"),
    ],
)
def test_bad_run_options_write_nothing(tmp_path: Path, args: list[str], needle: str) -> None:
    db = tmp_path / "t.db"
    assert needle in one_line(tprompt(db, "run", *args, check=False), 2)
    assert not db.exists()


@pytest.mark.parametrize(
    ("text", "args", "needle"),
    [
        ("steps = true\n", [], "steps: expected a whole number, got true"),
        ('steps = "x"\n', ["--steps", "1"], "steps"),  # a bad value in the file, overridden: still an error
        ("candidates = 0\n", ["--candidates", "2"], "candidates"),
    ],
)
def test_config_file_values_are_checked_strictly(tmp_path: Path, text: str, args: list[str], needle: str) -> None:
    cfg = tmp_path / "run.toml"
    cfg.write_text(text)
    db = tmp_path / "t.db"
    line = one_line(tprompt(db, "run", "--model", "fake", "--config", str(cfg), *args, check=False), 2)
    assert needle in line and "run.toml" in line
    assert not db.exists()


def test_model_in_a_config_file_sets_both_roles(tmp_path: Path) -> None:
    cfg = tmp_path / "run.toml"
    cfg.write_text('model = "fake"\nsteps = 1\ncandidates = 1\nexamples = 2\ntest_examples = 2\n')
    out = json.loads(tprompt(tmp_path / "t.db", "run", "--config", str(cfg), "--json").stdout)
    show = json.loads(tprompt(tmp_path / "t.db", "show", out["run_id"], "--json").stdout)
    assert show["config"]["proposer"] == show["config"]["scorer"] == "fake"


def test_task_file_messages_name_the_real_cause(tmp_path: Path) -> None:
    bad_csv = tmp_path / "q.csv"
    bad_csv.write_text('question,answer\n"What is 2+2?,4\nWhat is 3+3?,6\n')
    with pytest.raises(BadTaskFile, match=r"q.csv:\d+: malformed CSV"):
        load_task(str(bad_csv))
    bad_json = tmp_path / "q.jsonl"
    bad_json.write_text('{"question": 123, "answer": "4"}\n')
    with pytest.raises(BadTaskFile, match="'question' must be text, got a number"):
        load_task(str(bad_json))


def test_hints_name_what_exists(tmp_path: Path) -> None:
    tasks = tprompt(tmp_path / "t.db", "tasks").stdout
    assert "--source PATH" in tasks
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "", "answer": "4"}\n')
    line = one_line(tprompt(tmp_path / "t.db", "run", "--model", "fake", "--target", str(bad), check=False))
    # The hint names the database it was given (it is not the default one), so it works as printed.
    assert f"tprompt --db {shlex.quote(str(tmp_path / 't.db'))} eval --skip-bad-rows" in line
