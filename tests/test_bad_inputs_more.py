"""More bad inputs of issue 19 (item 3): one clear line, a non-zero exit, nothing written.

Each test's comment says what the case printed (or did) before its fix.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from test_cli_mistakes import one_line
from test_graph import tprompt

SMALL_RUN = ("--model", "fake", "--steps", "1", "--candidates", "1", "--examples", "2", "--test-examples", "2")


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    db = tmp_path_factory.mktemp("more") / "t.db"
    proc = tprompt(db, "run", *SMALL_RUN, "--json")
    return db, json.loads(proc.stdout)["run_id"]


def _copy(db: Path, to: Path) -> Path:
    """A copy of ``db`` with everything in its main file (no -wal beside it)."""
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    shutil.copy(db, to)
    return to


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- config values that cannot be stored ------------------------------------------------


@pytest.mark.parametrize(("name", "text", "needle"), [
    ("w.toml", "[weights]\naccuracy = inf\n", "weights.accuracy: Input should be a finite number"),
    ("w.toml", "[weights]\naccuracy = nan\n", "weights.accuracy: Input should be a finite number"),
    ("p.json", '{"prices": {"fake": [NaN, 1]}}', "prices.fake.0: Input should be a finite number"),
    ("p.json", '{"prices": {"fake": [1, Infinity]}}', "prices.fake.1: Input should be a finite number"),
    ("p.json", '{"prices": {"fake": [-1, 1]}}', "prices.fake.0: Input should be greater than or equal to 0"),
])
def test_a_config_weight_or_price_that_is_not_a_finite_number(tmp_path: Path, name: str, text: str,
                                                              needle: str) -> None:
    # was (inf/NaN): "run r-... created", then "stored run.created payload is invalid (1 validation error for
    # RunCreated)": the value had been stored as null and the run could never be read back;
    # was (negative price): accepted silently, and spend came out negative
    (tmp_path / name).write_text(text)
    db = tmp_path / "t.db"
    line = one_line(tprompt(db, "run", "--config", str(tmp_path / name), *SMALL_RUN, check=False), code=2)
    assert needle in line and "created" not in line
    assert not db.exists()


def test_a_run_stored_with_a_null_weight_fails_with_one_clear_line(small_run: tuple[Path, str],
                                                                  tmp_path: Path) -> None:
    # was: "stored run.created payload is invalid (1 validation error for RunCreated) (the file was edited or
    # damaged ...)": one line, but it named neither the field nor the cause
    db = _copy(small_run[0], tmp_path / "null.db")
    run_id = small_run[1]
    conn = sqlite3.connect(db)
    payload = conn.execute("SELECT payload FROM events WHERE run_id = ? AND seq = 1", (run_id,)).fetchone()[0]
    data = json.loads(payload)
    data["config"]["weights"] = {"accuracy": None}  # what an older tprompt stored for accuracy = inf
    conn.execute("DROP TRIGGER events_no_update")
    conn.execute("UPDATE events SET payload = ? WHERE run_id = ? AND seq = 1", (json.dumps(data), run_id))
    conn.commit()
    conn.close()
    for command in ("resume", "show"):
        line = one_line(tprompt(db, command, run_id, check=False), code=1)
        assert "config.weights.accuracy is null" in line and "inf or NaN" in line and "start it again" in line


@pytest.mark.parametrize("value", ["inf", "1e309", "nan", "-inf"])
def test_rescore_with_a_weight_that_is_not_finite(small_run: tuple[Path, str], tmp_path: Path, value: str) -> None:
    # was: a pydantic traceback ("objective: Input should be a finite number") after the fork was begun
    db = _copy(small_run[0], tmp_path / "t.db")
    line = one_line(tprompt(db, "rescore", small_run[1], "--weight", f"accuracy={value}", check=False), code=2)
    assert f"bad weight 'accuracy={value}'" in line and "not a finite number" in line
    assert len(json.loads(tprompt(db, "runs", "--json").stdout)) == 1


def test_rescore_with_a_negative_weight_names_the_rule(small_run: tuple[Path, str], tmp_path: Path) -> None:
    # was: "error: weights: For further information visit https://errors.pydantic.dev/..."
    db = _copy(small_run[0], tmp_path / "t.db")
    line = one_line(tprompt(db, "rescore", small_run[1], "--weight", "accuracy=-1", check=False), code=2)
    assert "weights.accuracy: Input should be greater than or equal to 0" in line and "pydantic" not in line


# --- task names too long for a file name ---------------------------------------------------


@pytest.mark.parametrize("how", ["--target", "--source", "eval --task", "config"])
def test_a_task_name_too_long_for_a_file_name(tmp_path: Path, how: str) -> None:
    # was: OSError: [Errno 36] File name too long (a traceback; the 10 MB name printed whole)
    db = tmp_path / "t.db"
    name = "x" * 300
    if how == "eval --task":
        args = ["eval", "--task", name, "--model", "fake"]
    elif how == "config":
        name = "y" * 10_000_000
        (tmp_path / "c.json").write_text(json.dumps({"target_task": name}))
        args = ["run", "--config", str(tmp_path / "c.json"), "--model", "fake"]
    else:
        args = ["run", how, name, "--model", "fake"]
    line = one_line(tprompt(db, *args, check=False), code=2)
    assert "unknown task" in line and "File name too long" in line and f"({len(name)} characters)" in line
    assert len(line) < 400
    assert not db.exists()


# --- damaged databases ----------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["runs", "show", "resume", "events", "run"])
def test_a_database_with_a_page_overwritten(small_run: tuple[Path, str], tmp_path: Path, command: str) -> None:
    # was: sqlite3.DatabaseError: database disk image is malformed (a traceback from runs, show, resume, events);
    # run said "is not a tprompt database", which sends the user to the wrong file
    db = _copy(small_run[0], tmp_path / "m.db")
    conn = sqlite3.connect(db)
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with open(db, "r+b") as f:  # page 2: the root of the first table the schema made
        f.seek(page)
        f.write(b"\xff" * page)
    before = db.read_bytes()
    args = {"runs": [], "run": list(SMALL_RUN)}.get(command, [small_run[1]])
    line = one_line(tprompt(db, command, *args, check=False), code=1)
    assert "m.db is damaged (database disk image is malformed)" in line and ".recover" in line
    assert db.read_bytes() == before
