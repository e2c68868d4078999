"""``tprompt merge``: a lossless, idempotent, atomic union of tprompt databases (issue 21).

Runs are made by the real graph on the fake model (one step, a few examples, about a second
each) and built once per module; each test copies the files it changes.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tprompt.errors import (
    DatabaseDamaged,
    MergeConflict,
    MissingForkParent,
    NotATPromptDatabase,
    SchemaTooNew,
    StoreError,
    UnknownRun,
    UsageError,
)
from tprompt.experiments.grid import plan_experiment, run_experiment
from tprompt.graph import Runner, create_run, fork_run, make_config
from tprompt.models import fake as fake_model
from tprompt.stores import EventLog, RunFailed, Store
from tprompt.stores.merge import MergeCounts, merge_files, merge_into

RUN = {"steps": 1, "candidates": 2, "examples": 3, "test_examples": 3, "mode": "generate"}
SMALL = dict(source_tasks=["ai2_science"], target_task="arc_challenge", proposer="fake", scorer="fake", top_k=2, **RUN)
TABLES = ("runs", "events", "transcripts", "bodies", "llm_cache", "experiments", "run_summaries")
KEYS = {"runs": "run_id", "events": "run_id, seq", "transcripts": "call_id", "bodies": "hash",
        "llm_cache": "cache_key", "experiments": "experiment_id", "run_summaries": "run_id"}


def experiment_db(path: Path, name: str, seed: int) -> str:
    """A database holding an experiment of one cell (run by the real grid code); returns the cell's run id."""
    grid = {"name": name, "models": ["fake"], "sources": ["ai2_science"], "targets": ["arc_challenge"],
            "seeds": [seed], "run": RUN}
    with EventLog(path) as log:
        _, results = run_experiment(log, plan_experiment(grid))
        return results[0][1].run_id


def rows(path: Path, table: str) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"SELECT * FROM {table} ORDER BY {KEYS[table]}").fetchall()


def keys(path: Path, table: str) -> set[tuple]:
    with sqlite3.connect(path) as conn:
        return set(conn.execute(f"SELECT {KEYS[table]} FROM {table}").fetchall())


def dump(path: Path) -> dict[str, list[tuple]]:
    return {t: rows(path, t) for t in TABLES}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def integrity(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA integrity_check").fetchall()


def copy(src: Path, dst: Path) -> Path:
    with Store(src, readonly=True) as store:
        store.backup(dst)
    return dst


def without_run(src: Path, dst: Path, run_id: str) -> Path:
    """A copy of ``src`` without ``run_id``'s rows: a fork whose parent lives in another file.

    No tprompt command writes such a file (forks are made beside their parent); a merge
    must still handle one, so the test makes it by hand (the immutability triggers are
    dropped for the deletes and put back).
    """
    copy(src, dst)
    conn = sqlite3.connect(dst)
    triggers = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'trigger'").fetchall()
    conn.execute("PRAGMA foreign_keys = OFF")
    for name in ("events_no_update", "events_no_delete"):
        conn.execute(f"DROP TRIGGER {name}")
    for table in ("events", "run_summaries", "transcripts", "runs"):
        conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
    for (sql,) in triggers:
        conn.execute(sql)
    conn.commit()
    conn.close()
    return dst


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The module's databases: two experiments made apart, a run paused and completed, a fork."""
    root = tmp_path_factory.mktemp("merge")
    a, b = root / "a.db", root / "b.db"
    run_a, run_b = experiment_db(a, "ga", 0), experiment_db(b, "gb", 1)
    # One run twice: paused after its first pieces of work (short), and then completed (long).
    long_db, short_db = root / "long.db", root / "short.db"
    checks = iter(range(100))
    with EventLog(long_db) as log:
        run = create_run(log, make_config(SMALL), run_id="r-prefix")
        assert Runner(log, run, pause_check=lambda: next(checks) >= 2).run().status == "paused"
        log.store.backup(short_db)
        assert Runner(log, run).run().status == "completed"
    # A fork of run_a made in a copy of a.db, then the copy without run_a: the fork's parent is in a.db only.
    forked = copy(a, root / "forked.db")
    with EventLog(forked) as log:
        point = next(e.seq for e in log.events(run_a) if e.type == "stage.started")
        fork = fork_run(log, run_a, at_seq=point, overrides={"seed": 5})
        assert Runner(log, fork).run().status == "completed"
    fork_only = without_run(forked, root / "fork_only.db", run_a)
    return {"a": a, "b": b, "run_a": run_a, "run_b": run_b, "long": long_db, "short": short_db,
            "fork": fork, "fork_only": fork_only}


def one_line_error(code: int, err: str) -> str:
    assert code != 0
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_two_files_merge_into_one_every_command_reads(base: dict, tmp_path: Path, cli) -> None:
    a, b = base["a"], base["b"]
    into = tmp_path / "all.db"
    code, out, err = cli("merge", str(a), str(b), "--into", str(into))
    assert code == 0, err
    assert out.count("\n") == 1 and f"{len(keys(a, 'runs') | keys(b, 'runs'))} new runs" in out
    assert integrity(into) == [("ok",)]
    for table in TABLES:  # the union, key by key
        assert keys(into, table) == keys(a, table) | keys(b, table), table
        assert sorted(rows(into, table)) == sorted(set(rows(a, table)) | set(rows(b, table))), table
    db = ["--db", str(into)]
    code, out, err = cli(*db, "runs", "--json")
    assert code == 0, err
    assert {(r["run_id"],) for r in json.loads(out)} == keys(a, "runs") | keys(b, "runs")
    for source in (a, b):  # each run reads in the merged file as it does in its own
        for (run,) in keys(source, "runs"):
            for command in ("show", "transcript", "events"):
                code, out, err = cli(*db, command, run, "--json")
                assert code == 0, err
                alone = cli("--db", str(source), command, run, "--json")
                assert json.loads(out) == json.loads(alone[1]), (command, run)
    for name in ("ga", "gb"):
        code, out, err = cli(*db, "report", name, "--out", str(tmp_path / f"report-{name}"), "--json")
        assert code == 0, err
        assert (tmp_path / f"report-{name}" / "report.md").exists()


def test_merging_twice_changes_nothing(base: dict, tmp_path: Path) -> None:
    into = tmp_path / "all.db"
    first = merge_files([base["a"], base["b"]], into)
    assert first.runs == len(keys(base["a"], "runs") | keys(base["b"], "runs")) and first.experiments == 2
    assert first.events == len(keys(into, "events")) > 0
    before = dump(into)
    again = merge_files([base["a"], base["b"]], into)
    assert again == MergeCounts() and not again.changed
    assert again.describe().startswith("nothing new")
    assert dump(into) == before
    with Store(into) as store:  # the Python API too, and a source merged into a store holding it already
        assert merge_into(store, base["a"]) == MergeCounts()
    assert dump(into) == before


def test_conflicting_run_is_refused_naming_run_and_seq(base: dict, tmp_path: Path, cli) -> None:
    left, right = copy(base["short"], tmp_path / "left.db"), copy(base["short"], tmp_path / "right.db")
    with EventLog(left) as log:
        Runner(log, "r-prefix").run()
    with EventLog(right) as log:
        log.append("r-prefix", [RunFailed(error="stopped by hand")])
    with EventLog(left, readonly=True) as lo, EventLog(right, readonly=True) as ro:
        pairs = zip(lo.raw_events("r-prefix"), ro.raw_events("r-prefix"))
        first = next(x[1] for x, y in pairs if x[2:6] != y[2:6])
    assert first > 1
    dst_hash = digest(left)
    code, _, err = cli("merge", str(right), "--into", str(left))
    line = one_line_error(code, err)
    assert "r-prefix" in line and f"seq {first}" in line
    assert digest(left) == dst_hash
    # A good source before the bad one in the same merge: its rows go back out with the rest.
    before = dump(left)
    code, _, err = cli("merge", str(base["b"]), str(right), "--into", str(left))
    assert f"seq {first}" in one_line_error(code, err)
    assert dump(left) == before and not keys(left, "runs") & keys(base["b"], "runs")
    new = tmp_path / "new.db"
    code, _, err = cli("merge", str(left), str(right), "--into", str(new))
    assert "r-prefix" in one_line_error(code, err) and f"seq {first}" in err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith((".new", "new"))) == []
    with Store(left) as store, pytest.raises(MergeConflict) as caught:
        merge_into(store, right)
    assert caught.value.run_id == "r-prefix" and caught.value.seq == first


@pytest.mark.parametrize("order", ["short_into_long", "long_into_short"])
def test_a_prefix_is_extended_to_the_longer_log(base: dict, tmp_path: Path, order: str) -> None:
    short, long_ = base["short"], base["long"]
    dst, src = (long_, short) if order == "short_into_long" else (short, long_)
    dst = copy(dst, tmp_path / "dst.db")
    with Store(dst) as store:
        counts = merge_into(store, src)
    assert counts.runs == 0
    assert counts.runs_extended == (1 if order == "long_into_short" else 0)
    assert rows(dst, "events") == rows(long_, "events")
    assert rows(dst, "runs") == rows(long_, "runs")  # status and updated_at of the longer log
    assert rows(dst, "run_summaries") == rows(long_, "run_summaries")
    with EventLog(dst, readonly=True) as log:
        assert log.state("r-prefix").status == "completed"
    assert len(rows(short, "events")) < len(rows(long_, "events"))
    assert integrity(dst) == [("ok",)]


@pytest.mark.parametrize("bad", ["truncated", "foreign_sqlite", "text", "empty", "newer", "missing", "folder"])
def test_a_bad_source_is_refused_and_nothing_is_written(base: dict, tmp_path: Path, cli, bad: str) -> None:
    source = tmp_path / f"{bad}.db"
    expected: type[Exception]
    if bad == "truncated":
        data = base["a"].read_bytes()
        source.write_bytes(data[: len(data) // 2])
        expected = DatabaseDamaged
    elif bad == "foreign_sqlite":
        with sqlite3.connect(source) as conn:
            conn.execute("CREATE TABLE notes (text TEXT)")
        expected = NotATPromptDatabase
    elif bad == "text":
        source.write_text("runs, events\n" * 200)
        expected = NotATPromptDatabase
    elif bad == "empty":
        source.touch()
        expected = NotATPromptDatabase
    elif bad == "newer":
        copy(base["b"], source)
        with sqlite3.connect(source) as conn:
            conn.execute("PRAGMA user_version = 99")
        expected = SchemaTooNew
    elif bad == "missing":
        expected = StoreError
    else:
        source.mkdir()
        expected = StoreError
    dst = copy(base["a"], tmp_path / "dst.db")
    dst_hash = digest(dst)
    code, _, err = cli("merge", str(base["b"]), str(source), "--into", str(dst))
    assert str(source) in one_line_error(code, err)
    assert digest(dst) == dst_hash
    new = tmp_path / "new.db"
    code, _, err = cli("merge", str(base["b"]), str(source), "--into", str(new))
    one_line_error(code, err)
    assert not [p for p in tmp_path.iterdir() if "new.db" in p.name]
    with Store(dst) as store, pytest.raises(expected):
        merge_into(store, source)
    assert digest(dst) == dst_hash


def test_fork_merges_with_its_parent_from_another_file(base: dict, tmp_path: Path, cli) -> None:
    fork, parent = base["fork"], base["run_a"]
    fork_only = base["fork_only"]
    assert parent not in {k[0] for k in keys(fork_only, "runs")}
    into = tmp_path / "all.db"
    # The fork comes first: the parent arrives later in the same merge.
    code, _, err = cli("merge", str(fork_only), str(base["a"]), "--into", str(into))
    assert code == 0, err
    assert integrity(into) == [("ok",)]
    code, out, err = cli("--db", str(into), "show", fork, "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["status"] == "completed" and shown["parent_run_id"] == parent
    shot = tmp_path / "fork.svg"
    code, _, err = cli("--db", str(into), "ui", fork, "--screenshot", str(shot))  # the UI opens the fork
    assert code == 0, err
    assert fork in shot.read_text(encoding="utf-8").replace("&#160;", " ")
    with EventLog(into, readonly=True) as merged, EventLog(base["a"], readonly=True) as a:
        state = merged.state(fork)
        point = state.parent_seq
        assert [e.event_id for e in merged.events(fork, upto=point)] == [e.event_id for e in a.events(parent, upto=point)]
    # Alone, the fork has no parent to read its history through: refused, nothing made.
    empty = tmp_path / "empty.db"
    Store(empty).close()
    empty_hash = digest(empty)
    for target in (empty, tmp_path / "fork-alone.db"):
        code, _, err = cli("merge", str(fork_only), "--into", str(target))
        line = one_line_error(code, err)
        assert fork in line and parent in line
    assert digest(empty) == empty_hash and not (tmp_path / "fork-alone.db").exists()
    with Store(empty) as store, pytest.raises(MissingForkParent):
        merge_into(store, fork_only)


def test_same_file_as_source_and_destination_is_refused(base: dict, tmp_path: Path, cli) -> None:
    dst = copy(base["a"], tmp_path / "dst.db")
    link = tmp_path / "link.db"
    link.symlink_to(dst)
    code, _, err = cli("merge", str(base["b"]), str(link), "--into", str(dst))
    assert "merged into" in one_line_error(code, err)
    with Store(dst) as store, pytest.raises(UsageError):
        merge_into(store, link)


@pytest.fixture
def counted_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    """Requests the fake model answers (each one a paid call); ``crash_at`` makes that call fail, once."""
    seen = {"requests": 0, "calls": 0, "crash_at": 0}
    enter = fake_model.FakeBackend._enter_call

    def counting(self: fake_model.FakeBackend, count: int) -> None:
        seen["calls"] += 1
        if seen["calls"] == seen["crash_at"]:
            from tprompt.errors import BackendError

            raise BackendError("the worker died")
        enter(self, count)
        seen["requests"] += count

    monkeypatch.setattr(fake_model.FakeBackend, "_enter_call", counting)
    yield seen


def test_run_ids_seed_a_shard_so_a_retried_cell_pays_no_call_twice(
    base: dict, tmp_path: Path, counted_calls: dict[str, int]
) -> None:
    # The whole cell, uninterrupted: what it pays.
    with EventLog(tmp_path / "sequential.db") as log:
        run = create_run(log, make_config(SMALL), run_id="r-cell")
        Runner(log, run).run()
    sequential = counted_calls["requests"]
    # Attempt 1 on a worker dies in the middle of a step, after some of its calls were answered.
    counted_calls.update(requests=0, calls=0, crash_at=12)
    shard1 = tmp_path / "shard1.db"
    with EventLog(shard1) as log:
        create_run(log, make_config(SMALL), run_id="r-cell")
        with pytest.raises(Exception, match="worker died"):
            Runner(log, "r-cell").run()
    paid_first = counted_calls["requests"]
    assert 0 < paid_first < sequential
    # The driver holds that shard and other cells; the retry's shard is seeded with this cell only.
    driver = copy(base["a"], tmp_path / "driver.db")
    with Store(driver) as store:
        merge_into(store, shard1)
    shard2 = tmp_path / "shard2.db"
    with Store(shard2) as store:
        seeded = merge_into(store, driver, run_ids=["r-cell"])
    assert seeded.runs == 1 and seeded.experiments == 0
    assert {k[0] for k in keys(shard2, "runs")} == {"r-cell"}
    with sqlite3.connect(shard1) as conn:
        wanted = {r[0] for r in conn.execute("SELECT cache_key FROM transcripts WHERE error IS NULL")}
    with sqlite3.connect(driver) as conn:
        named = {r[0] for r in conn.execute("SELECT cache_key FROM transcripts WHERE run_id = 'r-cell'")}
    seeded_cache = {k[0] for k in keys(shard2, "llm_cache")}
    # This cell's answers (the failed call's too, when another cell had that answer), no other cell's.
    assert wanted <= seeded_cache == {k[0] for k in keys(driver, "llm_cache")} & named
    assert len(seeded_cache) < len(keys(driver, "llm_cache"))
    assert keys(shard2, "transcripts") == keys(shard1, "transcripts")
    # Attempt 2 resumes in the seeded shard: the answers of attempt 1 come from the cache.
    counted_calls.update(requests=0, calls=0, crash_at=0)
    attempt1_end = max(r[-1] for r in rows(shard1, "transcripts"))
    with EventLog(shard2) as log:
        assert Runner(log, "r-cell").run().status == "completed"
    with sqlite3.connect(shard2) as conn:
        retry = conn.execute(
            "SELECT cache_key, cache_hit FROM transcripts WHERE error IS NULL AND created_at > ?", (attempt1_end,)
        ).fetchall()
    paid_again = {key for key, hit in retry if not hit} & wanted
    assert paid_again == set()  # no answer of attempt 1 is paid for again ...
    # ... the calls of the piece that died are asked again and answered by the seeded cache.
    assert {key for key, hit in retry if hit} & wanted
    assert counted_calls["requests"] == sum(1 for _, hit in retry if not hit)
    assert paid_first + counted_calls["requests"] <= sequential
    # Shipped back, the shard extends the driver's run (the prefix rule) and the cell reads completed.
    with Store(driver) as store:
        back = merge_into(store, shard2)
    assert back.runs_extended == 1 and back.runs == 0
    with EventLog(driver, readonly=True) as log:
        assert log.state("r-cell").status == "completed"


def test_run_ids_naming_an_unknown_run_is_refused(base: dict, tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store, pytest.raises(UnknownRun, match="r-nope"):
        merge_into(store, base["a"], run_ids=["r-nope"])
    assert rows(tmp_path / "s.db", "runs") == []


def test_run_ids_bring_a_forks_ancestors(base: dict, tmp_path: Path) -> None:
    merged = tmp_path / "all.db"
    merge_files([base["a"], base["fork_only"]], merged)
    with Store(tmp_path / "s.db") as store:
        counts = merge_into(store, merged, run_ids=[base["fork"]])
    assert counts.runs == 2 and counts.experiments == 0
    assert {k[0] for k in keys(tmp_path / "s.db", "runs")} == {base["fork"], base["run_a"]}
    with EventLog(tmp_path / "s.db", readonly=True) as log:
        assert log.state(base["fork"]).status == "completed"


def test_an_experiment_name_under_two_ids_is_refused(base: dict, tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    experiment_db(other, "ga", 3)  # the same name, started apart: another id
    dst = copy(base["a"], tmp_path / "dst.db")
    dst_hash = digest(dst)
    with Store(dst) as store, pytest.raises(MergeConflict, match="'ga'"):
        merge_into(store, other)
    assert digest(dst) == dst_hash


def test_many_sources_for_an_existing_file_are_merged_at_once(base: dict, tmp_path: Path) -> None:
    # More files than SQLite attaches at once: combined beside the destination, then merged in one go.
    copies = [copy(base["b"], tmp_path / f"b{i}.db") for i in range(9)]
    dst = copy(base["a"], tmp_path / "dst.db")
    counts = merge_files([*copies, base["fork_only"]], dst)
    new_runs = (keys(base["b"], "runs") | keys(base["fork_only"], "runs")) - keys(base["a"], "runs")
    assert counts.runs == len(new_runs)  # nine copies of b: once
    assert integrity(dst) == [("ok",)]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".dst")]
    assert keys(dst, "events") == keys(base["a"], "events") | keys(base["b"], "events") | keys(base["fork_only"], "events")


def test_merge_has_help_with_an_example_and_json(base: dict, tmp_path: Path, cli) -> None:
    code, out, _ = cli("merge", "--help")
    assert code == 0 and "Example: tprompt merge" in out
    code, out, err = cli("merge", str(base["b"]), "--into", str(tmp_path / "b2.db"), "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["runs"] == len(keys(base["b"], "runs")) and data["events"] == len(keys(base["b"], "events"))
    assert data["into"] == str(tmp_path / "b2.db")
    code, _, err = cli("merge", "--into", str(tmp_path / "c.db"))
    one_line_error(code, err)
    assert not (tmp_path / "c.db").exists()


def test_a_fork_past_the_end_of_its_parents_merged_log_is_refused(base: dict, tmp_path: Path) -> None:
    # The parent's file holds a shorter copy of its log than the fork point: the fork's history would have a hole.
    forked = copy(base["long"], tmp_path / "forked.db")
    with EventLog(forked) as log:
        point = log.last_seq("r-prefix") - 1
        fork = fork_run(log, "r-prefix", at_seq=point, validate=False)
    alone = without_run(forked, tmp_path / "alone.db", "r-prefix")
    short_last = len(rows(base["short"], "events"))
    assert short_last < point
    with pytest.raises(MissingForkParent, match=f"at seq {point}.*up to seq {short_last}"):
        merge_files([alone, base["short"]], tmp_path / "bad.db")
    assert not (tmp_path / "bad.db").exists()
    counts = merge_files([alone, base["short"], base["long"]], tmp_path / "good.db")
    assert counts.runs == 2
    with EventLog(tmp_path / "good.db", readonly=True) as log:
        assert log.last_seq(fork) == point + 1


def test_a_run_forked_differently_in_two_files_is_refused(base: dict, tmp_path: Path) -> None:
    left, right = copy(base["long"], tmp_path / "left.db"), copy(base["long"], tmp_path / "right.db")
    for path, at in ((left, 3), (right, 4)):
        with EventLog(path) as log:
            fork_run(log, "r-prefix", at_seq=at, validate=False)
            fork_id = log.runs()[-1].run_id
        with sqlite3.connect(path) as conn:  # the same id for both forks, as two machines might have drawn
            conn.execute("PRAGMA foreign_keys = OFF")
            conn.execute("DROP TRIGGER events_no_update")
            conn.execute("UPDATE events SET run_id = 'r-fork', event_id = 'r-fork:forked' WHERE run_id = ?", (fork_id,))
            conn.execute("UPDATE run_summaries SET run_id = 'r-fork' WHERE run_id = ?", (fork_id,))
            conn.execute("UPDATE runs SET run_id = 'r-fork' WHERE run_id = ?", (fork_id,))
            conn.execute("CREATE TRIGGER events_no_update BEFORE UPDATE ON events"
                         " BEGIN SELECT RAISE(ABORT, 'tprompt events are immutable'); END")
    before = dump(left)
    with Store(left) as store, pytest.raises(MergeConflict, match="r-fork.*at seq 3.*at seq 4"):
        merge_into(store, right)
    assert dump(left) == before
