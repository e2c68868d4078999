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
    conn.execute("CREATE TRIGGER events_no_update BEFORE UPDATE ON events BEGIN SELECT RAISE(ABORT, 'x'); END")
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


def test_a_row_with_a_lone_surrogate_is_named_by_file_and_line(tmp_path: Path) -> None:
    # was: a UnicodeEncodeError traceback, after run had already written the run
    task = tmp_path / "mine.jsonl"
    rows = [{"question": f"q{i}?", "answer": "yes", "split": "train" if i % 2 else "test"} for i in range(6)]
    rows[1]["question"] = "bad \ud800 text"
    task.write_text("\n".join(json.dumps(r) for r in rows) + "\n")  # json.dumps escapes it: "\\ud800"
    db = tmp_path / "t.db"
    proc = tprompt(db, "run", "--target", str(task), "--model", "fake", "--steps", "1", check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and len(lines) <= 2, proc.stderr
    assert f"{task}:2" in lines[0] and "lone surrogate (\\ud800)" in lines[0]
    assert not db.exists()


# --- damaged databases ----------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["runs", "show", "resume", "events", "run", "eval"])
def test_a_database_with_a_page_overwritten(small_run: tuple[Path, str], tmp_path: Path, command: str) -> None:
    # was: sqlite3.DatabaseError: database disk image is malformed (a traceback from runs, show, resume, events);
    # run said "is not a tprompt database", which sends the user to the wrong file; eval (which reads no run)
    # scored and wrote its answers into the damaged file, exit 0
    db = _copy(small_run[0], tmp_path / "m.db")
    conn = sqlite3.connect(db)
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with open(db, "r+b") as f:  # page 2: the root of the first table the schema made
        f.seek(page)
        f.write(b"\xff" * page)
    before = db.read_bytes()
    args = {"runs": [], "run": list(SMALL_RUN),
            "eval": ["--task", "arc_challenge", "--prompt", "Answer.", "--model", "fake", "-n", "2"]}.get(command, [small_run[1]])
    line = one_line(tprompt(db, command, *args, check=False), code=1)
    assert "m.db is damaged (database disk image is malformed)" in line and ".recover" in line
    assert db.read_bytes() == before


# --- review edits longer than the run accepts ---------------------------------------------------


def test_revise_refuses_an_edit_or_addition_longer_than_max_prompt_chars() -> None:
    # was: accepted; the run then scored a candidate longer than it would ever accept from its proposer
    from tprompt.errors import UsageError
    from tprompt.graph.review import revise
    from tprompt.stores import PromptCandidate, prompt_id_of

    cands = [PromptCandidate(prompt_id=prompt_id_of(t), text=t, origin="proposed") for t in ("a", "b")]
    with pytest.raises(UsageError, match=r"the edit of candidate 1 has 31 characters, more than the run's "
                                         r"max_prompt_chars \(30\)"):
        revise(cands, edit={1: "x" * 31}, max_chars=30)
    with pytest.raises(UsageError, match=r"an added candidate has 31 characters"):
        revise(cands, add=["y" * 31], max_chars=30)
    assert [c.text for c in revise(cands, edit={1: "x" * 30}, add=["y" * 30], max_chars=30)] == \
        ["x" * 30, "b", "y" * 30]


@pytest.fixture
def paused_for_review(tmp_path: Path) -> tuple[Path, str]:
    from test_graph import SMALL

    from tprompt.graph import Runner, create_run, make_config
    from tprompt.stores import EventLog

    db = tmp_path / "r.db"
    with EventLog(db) as log:
        run_id = create_run(log, make_config({**SMALL, "steps": 1, "top_k": 1, "review": True,
                                              "max_prompt_chars": 200}))
        assert Runner(log, run_id).run().awaiting_review()
    return db, run_id


def _revised(db: Path, run_id: str) -> list[object]:
    from tprompt.stores import EventLog

    with EventLog(db, readonly=True) as log:
        return [e for e in log.events(run_id) if e.type == "step.revised"]


@pytest.mark.parametrize("option", ["--edit", "--add"])
def test_cli_review_refuses_a_candidate_longer_than_the_run_accepts(paused_for_review: tuple[Path, str],
                                                                     option: str) -> None:
    # was: accepted (a step.revised event with the 201-character candidate)
    db, run_id = paused_for_review
    value = "1=" + "x" * 201 if option == "--edit" else "x" * 201
    line = one_line(tprompt(db, "review", run_id, option, value, "--accept", check=False), code=2)
    assert "201 characters, more than the run's max_prompt_chars (200)" in line
    assert _revised(db, run_id) == []


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_tui_review_refuses_a_candidate_longer_than_the_run_accepts(
        paused_for_review: tuple[Path, str]) -> None:
    # was: accepted (the dialog recorded the 201-character candidate)
    from test_tui import open_run, running, wait_for
    from textual.widgets import Input


    db, run_id = paused_for_review
    async with running(db) as (app, pilot):
        await open_run(pilot, app, run_id)
        await pilot.press("v")
        await pilot.pause()
        app.screen.query_one("#review-add", Input).value = "x" * 201
        await pilot.click("#review-ok")
        await wait_for(pilot, lambda: any("max_prompt_chars (200)" in str(n.message) for n in app._notifications))
    assert _revised(db, run_id) == []


# --- files that are not (whole) tprompt databases ---------------------------------------------------


@pytest.mark.parametrize("command", [["resume", "r-x"], ["pause", "r-x"], ["review", "r-x"], ["fork", "r-x"],
                                     ["rescore", "r-x", "--weight", "accuracy=1"]])
def test_commands_on_existing_runs_do_not_write_a_schema_into_an_empty_file(tmp_path: Path,
                                                                             command: list[str]) -> None:
    # was: "no run 'r-x' in z.db", with the whole schema (100 KB) written into the 0-byte file
    db = tmp_path / "z.db"
    db.write_bytes(b"")
    line = one_line(tprompt(db, *command, check=False), code=1)
    assert "z.db is not a tprompt database (it is empty)" in line
    assert _files(tmp_path) == ["z.db"] and db.stat().st_size == 0


def test_commands_on_existing_runs_do_not_create_a_database(tmp_path: Path) -> None:
    # was: resume created and migrated typo.db, then said "no run 'r-x' in typo.db"
    line = one_line(tprompt(tmp_path / "typo.db", "resume", "r-x", check=False), code=1)
    assert "no tprompt database at" in line and _files(tmp_path) == []


def test_run_refuses_a_database_that_lacks_a_table_of_its_schema(small_run: tuple[Path, str],
                                                                  tmp_path: Path) -> None:
    # was: "run r-... created", then "error: ns.db: no such table: run_summaries", leaving a failed partial run
    db = _copy(small_run[0], tmp_path / "ns.db")
    conn = sqlite3.connect(db)
    conn.execute("DROP TABLE run_summaries")
    conn.commit()
    conn.close()
    before = db.read_bytes()
    line = one_line(tprompt(db, "run", *SMALL_RUN, check=False), code=1)
    assert "ns.db is damaged: schema version" in line and "run_summaries, which the file lacks" in line
    assert db.read_bytes() == before
    assert len(json.loads(tprompt(db, "runs", "--json").stdout)) == 1  # readers still read what is there


# --- a database in a folder that cannot be written -----------------------------------------------


@pytest.fixture
def immutable_folder(small_run: tuple[Path, str], tmp_path: Path):  # type: ignore[no-untyped-def]
    """A folder holding a copy of the small run's database, marked immutable (``chattr +i``: even root cannot
    write in it, as in a read-only mount); skipped where chattr is not allowed."""
    import subprocess

    folder = tmp_path / "ro"
    folder.mkdir()
    _copy(small_run[0], folder / "t.db")
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False).returncode != 0:
        pytest.skip("chattr +i is not allowed here")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


@pytest.mark.parametrize("command", ["runs", "show", "events", "export", "transcript"])
def test_readers_read_a_database_in_a_folder_that_cannot_be_written(
        immutable_folder: Path, small_run: tuple[Path, str], command: str) -> None:
    # was: "error: ro/t.db: unable to open database file" (mode=ro still needs to create t.db-shm)
    db = immutable_folder / "t.db"
    args = [] if command == "runs" else [small_run[1]]
    proc = tprompt(db, command, *args, check=False)
    assert proc.returncode == 0, proc.stderr
    assert small_run[1] in proc.stdout + proc.stderr
    assert _files(immutable_folder) == ["t.db"]


def test_a_writer_names_the_folder_that_cannot_be_written(immutable_folder: Path,
                                                          small_run: tuple[Path, str]) -> None:
    # was: "error: ro/t.db: unable to open database file"
    line = one_line(tprompt(immutable_folder / "t.db", "resume", small_run[1], check=False), code=1)
    assert "is in a folder that cannot be written" in line and "make the folder writable" in line


def test_reader_uri_opens_immutable_only_where_nothing_can_be_written(tmp_path: Path) -> None:
    # The rule behind the two tests above, on a folder with no write bits (which root could still write,
    # so the folder is "read-only on purpose", as a file without write bits is for writers).
    from tprompt.stores.db import reader_uri

    db = tmp_path / "t.db"
    db.write_bytes(b"")
    assert reader_uri(str(db)).endswith("?mode=ro")
    tmp_path.chmod(0o555)
    try:
        assert reader_uri(str(db)) == db.resolve().as_uri() + "?immutable=1"
        tmp_path.chmod(0o755)
        (tmp_path / "t.db-wal").write_bytes(b"commits not yet in t.db")
        tmp_path.chmod(0o555)
        assert reader_uri(str(db)).endswith("?mode=ro")  # immutable would not see the -wal's commits
    finally:
        tmp_path.chmod(0o755)


# --- leases: a killed holder, a holder on another host --------------------------------------------


def test_pause_of_a_run_whose_process_was_killed(tmp_path: Path) -> None:
    # was: "pause requested for r-...; its process pauses after the work in flight" (exit 0; no process ever
    # would), and the request was left in the database

    from test_graph import killed_in_a_call, wait_for_row

    db = tmp_path / "k.db"
    proc = killed_in_a_call(db, tmp_path / "gate")
    (run_id,) = wait_for_row(db, "SELECT run_id FROM runs", proc)
    line = one_line(tprompt(db, "pause", run_id, check=False), code=2)
    assert f"run {run_id} is not running: its process {proc.pid} is gone" in line
    assert f"tprompt --db {db} resume {run_id}" in line
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM run_requests").fetchone()[0] == 0
    conn.close()


@pytest.fixture
def held_elsewhere(tmp_path: Path) -> tuple[Path, str]:
    """A new run whose lease a process on another host holds (as after that machine lost power)."""
    from test_graph import SMALL

    from tprompt.graph import create_run, make_config
    from tprompt.stores import EventLog
    from tprompt.stores.leases import Holder, acquire

    db = tmp_path / "h.db"
    with EventLog(db) as log:
        run_id = create_run(log, make_config({**SMALL, "steps": 1, "top_k": 1}))
        acquire(log, run_id, Holder(4242, "another-host", "1"))
    return db, run_id


def test_resume_force_takes_over_a_lease_of_another_host(held_elsewhere: tuple[Path, str]) -> None:
    # was: "run r-... is running in process 4242 on another-host (wait for it, or pause it ...)", for ever:
    # no command could take the run over
    db, run_id = held_elsewhere
    line = one_line(tprompt(db, "resume", run_id, check=False), code=1)
    assert "running in process 4242 on another-host" in line and f"tprompt --db {db} resume {run_id} --force" in line
    done = tprompt(db, "resume", run_id, "--force", "--json")
    assert json.loads(done.stdout)["status"] == "completed"
    assert "--force" in tprompt(db, "resume", "--help").stdout


def test_resume_force_never_takes_over_a_live_process_here(tmp_path: Path) -> None:
    import os

    from test_graph import SMALL

    from tprompt.graph import create_run, make_config
    from tprompt.stores import EventLog
    from tprompt.stores.leases import Holder, acquire, process_start

    db = tmp_path / "l.db"
    with EventLog(db) as log:
        run_id = create_run(log, make_config({**SMALL, "steps": 1, "top_k": 1}))
        parent = os.getppid()  # the pytest runner's parent: alive, on this host
        acquire(log, run_id, Holder(parent, Holder.me().host, process_start(parent) or ""))
        before = log.state(run_id).last_seq
    line = one_line(tprompt(db, "resume", run_id, "--force", check=False), code=1)
    assert f"run {run_id} is running in process {parent}" in line
    with EventLog(db, readonly=True) as log:
        assert log.state(run_id).last_seq == before


def test_a_yaml_alias_bomb_as_prompt_file_is_one_line(tmp_path: Path) -> None:
    # The prompt file reads YAML with the one loader of --config/--rubric (_yaml.load_yaml), so the expansion
    # cap holds here too; before, this file was refused for its extra keys, not for its size.
    bomb = tmp_path / "p.yaml"
    bomb.write_text("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi")) + "messages: *i\n")
    db = tmp_path / "t.db"
    proc = tprompt(db, "run", "--model", "fake", "--prompt-file", str(bomb), check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and len(lines) <= 2, proc.stderr
    assert str(bomb) in lines[0] and "expands to more than" in lines[0] and not db.exists()
