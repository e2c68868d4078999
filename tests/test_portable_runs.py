"""A run works from any folder, and refuses a task file or metric module changed since it recorded them (issue 29)."""

from __future__ import annotations

import hashlib
import importlib
import json
from pathlib import Path

import pytest
from conftest import cli_in_process as cli
from test_own_task_cli import write_dates

from tprompt.evaluator import metric_worker

METRIC = '''import re


def iso_date(example, answer):
    return 1.0 if re.fullmatch(r"\\\\d{4}-\\\\d{2}-\\\\d{2}", str(answer).strip()) else 0.0
'''


def paused_after_a_step(capsys: pytest.CaptureFixture[str], db: Path, metric: str) -> dict:
    """``tprompt run`` of dates.jsonl scored by ``metric`` (MODULE:FUNCTION), paused by its rollout budget after
    its first step: its --json result."""
    code, out, err = cli(capsys, "--db", str(db), "run", "--target", "dates.jsonl", "--metric", metric, "--model",
                         "fake", "--steps", "2", "--candidates", "2", "--examples", "6", "--test-examples", "4",
                         "--max-rollouts", "12", "--json")
    assert code == 0, err
    state = json.loads(out)
    assert state["status"] == "paused"
    return state


@pytest.fixture
def own_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[Path, str, str]:
    """A run of a task file and a metric module given by relative names in folder proj/, paused after its first step."""
    proj = tmp_path / "proj"
    proj.mkdir()
    write_dates(proj / "dates.jsonl")
    # A module name of this test's own: metrics are registered by their MODULE:FUNCTION for the process.
    module = f"portable_{hashlib.sha1(str(tmp_path).encode()).hexdigest()[:10]}"
    (proj / f"{module}.py").write_text(METRIC)
    importlib.invalidate_caches()  # a module file written after this process started importing
    metric_worker.reset()  # the metrics worker of an earlier test imports from that test's folder
    monkeypatch.chdir(proj)
    db = tmp_path / "runs.db"
    state = paused_after_a_step(capsys, db, f"{module}:iso_date")
    monkeypatch.syspath_prepend(str(tmp_path))  # nothing of proj/ stays importable by accident
    import sys

    sys.modules.pop(module, None)
    monkeypatch.chdir(tmp_path / "..")
    return db, state["run_id"], module


def test_resume_replay_and_rescore_from_another_folder(own_run: tuple[Path, str, str],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    db, run_id, _ = own_run
    # was: "unknown task 'dates.jsonl'" and "cannot import datemetrics" from any other folder
    code, out, err = cli(capsys, "--db", str(db), "resume", run_id, "--json")
    assert code == 0, err
    done = json.loads(out)
    assert done["status"] == "completed" and done["target_task"] == str(db.parent / "proj" / "dates.jsonl")
    code, out, err = cli(capsys, "--db", str(db), "replay", run_id, "--rerun")
    assert code == 0, err
    code, out, err = cli(capsys, "--db", str(db), "rescore", run_id, "--weight", "iso_date=2", "--json")
    assert code == 0, err and json.loads(out)["status"] == "completed"


def test_a_changed_task_file_is_refused_and_accepted_for_rescoring(own_run: tuple[Path, str, str],
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    db, run_id, _ = own_run
    task = db.parent / "proj" / "dates.jsonl"
    with task.open("a") as f:
        f.write(json.dumps({"question": "On 1 May 2001.", "reference": "2001-05-01"}) + "\n")
    n_events = _events(db)
    for argv in (("resume", run_id), ("replay", run_id, "--rerun"), ("rescore", run_id, "--weight", "iso_date=2")):
        code, _, err = cli(capsys, "--db", str(db), *argv)
        # exit 1: the data changed under a right command (README: 1 data or environment, 2 a mistake in the command)
        assert code == 1 and len(err.strip().splitlines()) == 1, err
        assert f"its task file {task} changed since the run recorded it" in err
        assert f"tprompt --db {db} rescore {run_id} --accept-changed" in err
        assert _events(db) == n_events  # nothing written
    code, out, err = cli(capsys, "--db", str(db), "rescore", run_id, "--accept-changed", "--json")
    assert code == 0, err
    new_id = json.loads(out)["run_id"]
    code, out, _ = cli(capsys, "--db", str(db), "show", new_id, "--json")
    from tprompt.run_files import content_hash

    assert json.loads(out)["config"]["files"][str(task)]["sha256"] == content_hash(task)  # the new hash recorded


def test_a_changed_metric_module_is_refused(own_run: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]) -> None:
    db, run_id, module = own_run
    path = db.parent / "proj" / f"{module}.py"
    path.write_text(METRIC + "\n# edited\n")
    code, _, err = cli(capsys, "--db", str(db), "resume", run_id)
    assert code == 1 and f"its metric module {module} {path} changed" in err


def test_a_gone_task_file_is_a_data_failure(own_run: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]) -> None:
    # was: exit 2, the code of a mistake in the command; the command was right, the data moved (exit 1)
    db, run_id, _ = own_run
    task = db.parent / "proj" / "dates.jsonl"
    task.rename(task.with_suffix(".moved"))
    n_events = _events(db)
    code, _, err = cli(capsys, "--db", str(db), "resume", run_id)
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert f"its task file {task} is gone (put it back at that path" in err
    assert _events(db) == n_events


def _events(db: Path) -> int:
    import sqlite3

    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])


def test_rescore_records_the_metric_module_it_adds(own_run: tuple[Path, str, str], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """rescore --metric MODULE:FUNCTION records the module's file and hash as run does (was: the rescored run
    named a module it could import only from the folder of that rescore)."""
    import sys

    from tprompt.run_files import content_hash

    db, run_id, _ = own_run
    extra = tmp_path / "extra"
    extra.mkdir()
    module = f"added_{hashlib.sha1(str(tmp_path).encode()).hexdigest()[:10]}"
    path = extra / f"{module}.py"
    path.write_text(METRIC.replace("def iso_date", "def iso_strict"))
    importlib.invalidate_caches()
    metric_worker.reset()
    monkeypatch.chdir(extra)
    code, out, err = cli(capsys, "--db", str(db), "rescore", run_id, "--metric", f"{module}:iso_strict", "--json")
    assert code == 0, err
    new_id = json.loads(out)["run_id"]
    code, out, _ = cli(capsys, "--db", str(db), "show", new_id, "--json")
    recorded = json.loads(out)["config"]["files"][f"metric {module}"]
    assert (recorded["path"], recorded["sha256"], recorded["root"]) == (str(path), content_hash(path), str(extra))

    sys.modules.pop(module, None)
    metric_worker.reset()
    monkeypatch.chdir(tmp_path / "..")  # elsewhere: the module is found where the rescore recorded it
    code, out, err = cli(capsys, "--db", str(db), "rescore", new_id, "--weight", "iso_strict=2", "--json")
    assert code == 0, err
    path.write_text(path.read_text() + "\n# edited\n")
    n_events = _events(db)
    code, _, err = cli(capsys, "--db", str(db), "rescore", new_id, "--weight", "iso_strict=3")
    assert code == 1 and len(err.strip().splitlines()) == 1 and f"its metric module {module} {path} changed" in err
    assert _events(db) == n_events


def test_a_changed_description_sidecar_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    # was: not recorded, so a resumed run's proposer read the edited description silently (its requests changed)
    from tprompt.run_files import content_hash

    write_dates(tmp_path / "dates.jsonl")
    sidecar = tmp_path / "dates.description.txt"
    sidecar.write_text("Rewrite the date as YYYY-MM-DD.\n")
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "runs.db"
    code, out, err = cli(capsys, "--db", str(db), "run", "--target", "dates.jsonl", "--model", "fake", "--steps", "2",
                         "--candidates", "2", "--examples", "6", "--test-examples", "4", "--max-rollouts", "12", "--json")
    assert code == 0, err
    run_id = json.loads(out)["run_id"]
    sidecar.write_text("Rewrite the date in words.\n")
    n_events = _events(db)
    code, _, err = cli(capsys, "--db", str(db), "resume", run_id)
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert f"its task description file {sidecar} changed since the run recorded it" in err
    assert _events(db) == n_events
    code, out, err = cli(capsys, "--db", str(db), "rescore", run_id, "--accept-changed", "--json")
    assert code == 0, err
    code, out, _ = cli(capsys, "--db", str(db), "show", json.loads(out)["run_id"], "--json")
    recorded = json.loads(out)["config"]["files"][f"description {tmp_path / 'dates.jsonl'}"]
    assert recorded["path"] == str(sidecar) and recorded["sha256"] == content_hash(sidecar)


def test_a_rescore_of_a_paused_run_is_paused_and_resumes(own_run: tuple[Path, str, str],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    # was: listed as `running` (the rescore copies the history, not its pause), with no process running it
    db, run_id, _ = own_run
    code, out, err = cli(capsys, "--db", str(db), "rescore", run_id, "--weight", "iso_date=2", "--json")
    assert code == 0, err
    new_id = json.loads(out)["run_id"]
    assert json.loads(out)["status"] == "paused"
    code, out, err = cli(capsys, "--db", str(db), "runs", "--json")
    assert code == 0, err
    status = {r["run_id"]: r["status"] for r in json.loads(out)}
    assert status[new_id] == status[run_id] == "paused"
    code, out, err = cli(capsys, "--db", str(db), "resume", new_id, "--json")
    assert code == 0, err
    assert json.loads(out)["status"] == "completed"


def test_a_metric_given_as_a_file_is_recorded_and_found_from_anywhere(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # was: "cannot import metrics/x.py (ModuleNotFoundError ...)": only import paths were accepted
    from tprompt.run_files import content_hash

    proj, lib = tmp_path / "proj", tmp_path / "lib"
    proj.mkdir()
    lib.mkdir()
    write_dates(proj / "dates.jsonl")
    module = f"filemetric_{hashlib.sha1(str(tmp_path).encode()).hexdigest()[:10]}"
    path = lib / f"{module}.py"
    path.write_text(METRIC)
    metric_worker.reset()
    monkeypatch.chdir(proj)
    db = tmp_path / "runs.db"
    for bad, says in ((f"../lib/nope_{module}.py:iso_date", "no such file"),):
        code, out, err = cli(capsys, "--db", str(db), "run", "--target", "dates.jsonl", "--metric", bad, "--model", "fake")
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and f"metric {bad}: {says}" in err, err
        assert not db.exists()
    state = paused_after_a_step(capsys, db, f"../lib/{module}.py:iso_date")
    code, out, _ = cli(capsys, "--db", str(db), "show", state["run_id"], "--json")
    config = json.loads(out)["config"]
    assert config["metrics"] == [f"{module}:iso_date"]  # recorded as the import path it is, with its file
    recorded = config["files"][f"metric {module}"]
    assert (recorded["path"], recorded["sha256"], recorded["root"]) == (str(path), content_hash(path), str(lib))
    import sys

    sys.modules.pop(module, None)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(lib)])
    metric_worker.reset()
    monkeypatch.chdir(tmp_path / "..")
    n_events = _events(db)
    code, out, err = cli(capsys, "--db", str(db), "resume", state["run_id"], "--json")
    assert code == 0, err
    done = json.loads(out)
    assert done["status"] == "completed" and _events(db) > n_events and "iso_date" in json.dumps(done["table"])


def test_a_metric_file_whose_name_is_no_module_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    write_dates(tmp_path / "dates.jsonl")
    (tmp_path / "my-metric.py").write_text(METRIC)
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, "--db", "t.db", "eval", "--task", "dates.jsonl", "--metric", "my-metric.py:iso_date",
                         "--model", "fake")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert "metric my-metric.py:iso_date: my-metric.py is not a Python module name (rename the file" in err
    assert not (tmp_path / "t.db").exists()
