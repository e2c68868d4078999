"""Experiments and reports on the fake model: a 2x2 grid, kill and resume, equal budgets, reports."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tprompt.errors import ConfigError, UnknownTask
from tprompt.evaluator import compute_metrics
from tprompt.experiments.grid import (
    find_experiment,
    load_experiment_file,
    plan_experiment,
    run_experiment,
    transfer_cost,
)
from tprompt.experiments.report import build_report, render_markdown, replay_test_answers, write_report
from tprompt.graph import RunConfig, Runner, create_run, make_config
from tprompt.stores import EventLog

GRID = {
    "name": "grid",
    "models": ["fake"],
    "sources": ["ai2_science"],
    "targets": ["arc_challenge", "mmlu/anatomy"],
    "seeds": [0, 1],
    "run": {"steps": 2, "candidates": 2, "examples": 4, "test_examples": 8, "mode": "logprob"},
}


def write_toml(path: Path, grid: dict) -> Path:
    def value(v: object) -> str:
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(v)  # strings and numbers are written alike in JSON and TOML

    lines = [f"{k} = {value(v)}" for k, v in grid.items() if k != "run"]
    lines.append("[run]")
    lines += [f"{k} = {value(v)}" for k, v in grid["run"].items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def tprompt(db: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TPROMPT_DB": str(db)}
    proc = subprocess.run([sys.executable, "-m", "tprompt.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"tprompt {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """``cli(db, *args) -> (exit code, stdout, stderr)``: the CLI in this process (no interpreter start-up)."""
    from tprompt.cli import main

    def run(db: Path, *args: str, check: bool = True) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["--db", str(db), *args])
        captured = capsys.readouterr()
        if check and code != 0:
            raise AssertionError(f"tprompt {' '.join(args)} exited {code}:\n{captured.err}")
        return code, captured.out, captured.err

    return run


def train_scorer_calls(db: Path, run_id: str) -> int:
    """Scorer calls on training examples of one run, counted from its transcript rows."""
    with sqlite3.connect(db) as conn:
        (n,) = conn.execute(
            "SELECT COUNT(*) FROM transcripts WHERE run_id = ? AND agent = 'scorer' AND step != 'test'", (run_id,)
        ).fetchone()
    return n


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    db = tmp_path_factory.mktemp("grid") / "grid.db"
    with EventLog(db) as log:
        experiment, _visited = run_experiment(log, plan_experiment(GRID))
    return db, experiment


def test_grid_2x2_completes(finished: tuple[Path, object]) -> None:
    db, experiment = finished
    assert len(experiment.cells) == 2 and len(experiment.runs) == 2 * 2 * 2  # targets x seeds x arms
    with EventLog(db, readonly=True) as log:
        runs = log.runs()
        assert len(runs) == 8
        assert {r.status for r in runs} == {"completed"}
        names = {r.name for r in runs}
        assert names == {cr.name for cr in experiment.runs}
        for cell_run in experiment.runs:
            run_id = next(r.run_id for r in runs if r.name == cell_run.name)
            state = log.state(run_id)
            assert state.config.transfer == (cell_run.arm == "transfer")
            assert state.config.seed == cell_run.seed
            assert ("best_source" in state.tested) == (cell_run.arm == "transfer")
            if cell_run.arm == "target_only":
                assert "source" not in state.scorer_calls and not state.source_tasks


def test_arms_get_the_same_scorer_budget(finished: tuple[Path, object]) -> None:
    db, experiment = finished
    budget = experiment.cells[0].budget
    assert budget == transfer_cost(make_config(GRID["run"]), 1) == 4 * (1 + 2 * 2) + 2 * 4 + 2 * 2 * 4
    with EventLog(db, readonly=True) as log:
        by_name = {r.name: r.run_id for r in log.runs()}
        per_cell: dict[tuple[str, int], dict[str, int]] = {}
        for cell_run in experiment.runs:
            run_id = by_name[cell_run.name]
            calls = train_scorer_calls(db, run_id)
            state = log.state(run_id)
            # The transcripts and the events agree on what was spent.
            assert calls == state.scorer_calls.get("source", 0) + state.scorer_calls.get("target", 0)
            per_cell.setdefault((cell_run.cell.key, cell_run.seed), {})[cell_run.arm] = calls
    for arms in per_cell.values():
        assert arms["target_only"] == arms["transfer"] == budget


def test_unequal_budget_is_capped_per_arm(tmp_path: Path) -> None:
    # A budget that is not a whole number of steps: neither arm may exceed it,
    # and each stops only when one more candidate would not fit.
    grid = {**GRID, "name": "odd", "targets": ["arc_challenge"], "seeds": [3], "budgets": [43]}
    db = tmp_path / "odd.db"
    with EventLog(db) as log:
        _experiment, visited = run_experiment(log, plan_experiment(grid))
    assert [s.status for _, s in visited] == ["completed", "completed"]
    for _, state in visited:
        calls = train_scorer_calls(db, state.run_id)
        assert 43 - 4 < calls <= 43


def test_report_contains_every_cell(finished: tuple[Path, object], tmp_path: Path) -> None:
    db, experiment = finished
    with EventLog(db, readonly=True) as log:
        report = build_report(log, experiment=find_experiment(log, "grid"))
        files = write_report(log, report, tmp_path / "out")
        run_ids = [r.run_id for r in log.runs()]
    text = (tmp_path / "out" / "report.md").read_text()
    for cell in experiment.cells:
        assert f"{cell.model} · {' + '.join(cell.sources)} → {cell.target}" in text
    for run_id in run_ids:
        assert run_id in text
    for label in ("original prompt", "target-only (OPRO)", "Transfer-Prompting", "Transfer-Prompting − target-only"):
        assert label in text
    for metric in ("accuracy", "ifr", "ece", "auroc", "pr_p", "pr_n", "brier", "objective"):
        assert f"| {metric} " in text or f"| {metric} |" in text
    pngs = [p for p in files if p.suffix == ".png"]
    assert len(pngs) == 3 * len(experiment.cells)
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({png.name})" in text
    # Every group has both seeds for all three arms.
    for group in report.groups:
        for arm in ("original", "target_only", "transfer"):
            assert [s.seed for s in sorted(group.arm_samples(arm), key=lambda s: s.seed)] == [0, 1]


def test_report_cli_prints_tables_and_json(finished: tuple[Path, object], tmp_path: Path, cli) -> None:
    db, _ = finished
    _, stdout, _ = cli(db, "report", "grid", "--out", str(tmp_path / "r"))
    assert "Transfer-Prompting" in stdout and "arc_challenge" in stdout and "mmlu/anatomy" in stdout
    data = json.loads(cli(db, "report", "grid", "--out", str(tmp_path / "r2"), "--json")[1])
    assert data["kind"] == "experiment" and data["complete"] is True
    assert {g["target"] for g in data["groups"]} == {"arc_challenge", "mmlu/anatomy"}
    group = data["groups"][0]
    assert set(group["arms"]) == {"original", "target_only", "transfer"}
    assert group["arms"]["transfer"]["accuracy"]["n"] == 2
    assert (tmp_path / "r2" / "report.md").exists()


def test_change_is_the_paired_difference(finished: tuple[Path, object]) -> None:
    db, _ = finished
    with EventLog(db, readonly=True) as log:
        report = build_report(log, experiment=find_experiment(log, "grid"))
    group = report.groups[0]
    orig = {s.seed: s.values["accuracy"] for s in group.arm_samples("original")}
    trans = {s.seed: s.values["accuracy"] for s in group.arm_samples("transfer")}
    diffs = [trans[k] - orig[k] for k in (0, 1)]
    change = group.change("transfer")["accuracy"]
    assert change.mean == pytest.approx(sum(diffs) / 2)
    assert change.sd == pytest.approx(abs(diffs[0] - diffs[1]) / 2**0.5)


def test_reliability_answers_replay_the_tested_metrics(finished: tuple[Path, object]) -> None:
    db, _ = finished
    with EventLog(db, readonly=True) as log:
        run_id = log.runs()[1].run_id
        state = log.state(run_id)
        for role, row in state.tested.items():
            answers = replay_test_answers(log, run_id, role)
            assert answers is not None
            metrics = compute_metrics(answers[0], answers[1], [True] * len(answers[0]))
            assert metrics["accuracy"] == pytest.approx(row.metrics["accuracy"])
            assert metrics["ece"] == pytest.approx(row.metrics["ece"])


def test_report_of_one_run(tmp_path: Path, cli) -> None:
    db = tmp_path / "one.db"
    with EventLog(db) as log:
        run_id = create_run(log, make_config({
            "source_tasks": ["ai2_science"], "target_task": "arc_challenge", "proposer": "fake", "scorer": "fake",
            "steps": 1, "candidates": 2, "examples": 4, "test_examples": 6, "mode": "logprob",
        }))
        Runner(log, run_id).run()
    _, stdout, _ = cli(db, "report", run_id, "--out", str(tmp_path / "r"))
    assert "best source prompt" in stdout and "best target prompt" in stdout
    text = (tmp_path / "r" / "report.md").read_text()
    assert text.startswith("# Run report") and run_id in text and "best target prompt − original" in text
    assert sorted(p.suffix for p in (tmp_path / "r").iterdir()) == [".md", ".png", ".png", ".png"]


def test_report_of_a_partial_experiment_says_so(tmp_path: Path) -> None:
    db = tmp_path / "part.db"
    planned = plan_experiment({**GRID, "name": "part"})
    calls = []

    def pause_the_third(log, run_id, cell_run, index, total, *, resources=None):
        calls.append(index)
        runner = Runner(log, run_id, resources=resources)
        if index == 3:
            runner.request_pause()  # as if Ctrl-C came at once
        return runner.run()

    with EventLog(db) as log:
        _, visited = run_experiment(log, planned, execute=pause_the_third)
        assert calls == [1, 2, 3]
        assert [s.status for _, s in visited] == ["completed", "completed", "paused"]
        report = build_report(log, experiment=find_experiment(log, "part"))
    assert not report.complete
    text = render_markdown(report)
    assert "not complete" in text and "No finished runs yet." in text


def test_experiment_resumes_after_kill_without_rerunning_finished_cells(tmp_path: Path) -> None:
    db = tmp_path / "kill.db"
    grid = {**GRID, "name": "killed", "models": [{"proposer": "fake", "scorer": "fake:delay=0.02"}]}
    config = write_toml(tmp_path / "killed.toml", grid)
    env = {**os.environ, "TPROMPT_DB": str(db)}
    proc = subprocess.Popen([sys.executable, "-m", "tprompt.cli", "experiment", str(config)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    done: list[tuple[str, str]] = []
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
            if not db.exists():
                continue
            try:
                with sqlite3.connect(db, timeout=10) as conn:
                    done = conn.execute("SELECT run_id, name FROM runs WHERE status = 'completed'").fetchall()
                    running = conn.execute("SELECT COUNT(*) FROM runs WHERE status != 'completed'").fetchone()[0]
            except sqlite3.OperationalError:  # the file exists before its schema does (a busy machine shows it)
                continue
            if len(done) >= 3 and running:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the experiment finished before it could be killed"
    assert 3 <= len(done) < 8
    with EventLog(db, readonly=True) as log:
        before = {r.run_id: (r.name, log.state(r.run_id).event_count) for r in log.runs()}
        unfinished = [r.run_id for r in log.runs() if r.status != "completed"]
    assert unfinished  # the run in flight when the kill came

    out = tprompt(db, "experiment", str(config), "--json")
    data = json.loads(out.stdout)
    assert data["completed"] == data["total"] == 8
    with EventLog(db, readonly=True) as log:
        after = {r.run_id: (r.name, log.state(r.run_id).event_count) for r in log.runs()}
        assert {r.status for r in log.runs()} == {"completed"}
    assert len(after) == 8  # no run was created twice
    assert len({name for name, _ in after.values()}) == 8
    for run_id, _name in done:
        assert after[run_id] == before[run_id]  # finished cells untouched
    for run_id in unfinished:
        assert run_id in after  # the killed run was resumed, not replaced
    assert {r["run_id"] for r in data["runs"]} == set(after)


def test_rerunning_a_finished_experiment_runs_nothing(finished: tuple[Path, object], tmp_path: Path, cli) -> None:
    db, _ = finished
    with EventLog(db, readonly=True) as log:
        before = {r.run_id: log.state(r.run_id).event_count for r in log.runs()}
    data = json.loads(cli(db, "experiment", str(write_toml(tmp_path / "grid.toml", GRID)), "--json")[1])
    assert data["completed"] == 8
    with EventLog(db, readonly=True) as log:
        assert {r.run_id: log.state(r.run_id).event_count for r in log.runs()} == before


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seedz": [1]}, "seedz"),
        ({"run": {**GRID["run"], "seed": 3}}, "run.seed is set per cell"),
        ({"run": {**GRID["run"], "stepz": 3}}, "unknown key 'stepz'"),
        ({"budgets": [10]}, "too small"),
        ({"targets": []}, "targets"),
        ({"seeds": [1, 1]}, "seeds lists the same entry twice"),
        ({"run": {**GRID["run"], "patience": 2}}, "patience"),
        ({"run": {**GRID["run"], "steps": 0}}, r"^experiment \[run\]: steps: Input should be greater"),
        ({"run": {**GRID["run"], "steps": True}}, r"^experiment \[run\]: steps: expected a whole number, got true"),
    ],
)
def test_bad_experiment_configs(change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        plan_experiment({**GRID, **change})


def test_run_table_is_a_typed_config_stored_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    # [run] is a RunConfig whose fields set are the keys given: only they are stored and passed to the cells,
    # so a default such as precision is decided for each cell's own models (bf16 for smollm2 on a bf16 CPU,
    # none for fake), not once for the table's default models.
    monkeypatch.setattr("tprompt._cpu.bf16_native", lambda: True)
    run = {**GRID["run"], "request_timeout": 60}
    experiment = plan_experiment({**GRID, "models": ["fake", "smollm2"], "run": run})
    assert isinstance(experiment.config.run, RunConfig) and experiment.config.run.request_timeout == 60.0
    assert experiment.config.model_dump(mode="json")["run"] == run
    precision = {c.config.proposer: c.config.precision for c in experiment.runs}
    assert precision == {"fake": "fp32", "smollm2": "bf16"}


def test_changed_grid_under_the_same_name_is_refused(tmp_path: Path, cli) -> None:
    db = tmp_path / "x.db"
    first = write_toml(tmp_path / "a.toml", {**GRID, "name": "same", "targets": ["arc_challenge"], "seeds": [0]})
    cli(db, "experiment", str(first))
    second = write_toml(tmp_path / "b.toml", {**GRID, "name": "same", "targets": ["mmlu/anatomy"], "seeds": [0]})
    code, _, stderr = cli(db, "experiment", str(second), check=False)
    assert code == 2
    assert "already exists" in stderr and "Traceback" not in stderr


def test_cli_errors_are_one_line(tmp_path: Path, cli) -> None:
    db = tmp_path / "x.db"
    code, _, stderr = cli(db, "experiment", str(tmp_path / "missing.toml"), check=False)
    assert code == 2 and "does not exist" in stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [\n")
    code, _, stderr = cli(db, "experiment", str(bad), check=False)
    assert code == 2 and "bad.toml" in stderr
    code, _, stderr = cli(db, "experiment", str(write_toml(tmp_path / "t.toml", {**GRID, "targets": ["no_such_task"]})),
                          check=False)
    assert code != 0 and "no_such_task" in stderr and len(stderr.strip().splitlines()) <= 3
    with EventLog(db) as log:
        assert log.runs() == []  # nothing was started
    cli(db, "run", "--model", "fake", "--steps", "1", "--examples", "2", "--test-examples", "2")
    code, _, stderr = cli(db, "report", "nothing-here", check=False)
    assert code == 2 and "no experiment or run" in stderr


def test_yaml_and_dry_run(tmp_path: Path, cli) -> None:
    path = tmp_path / "grid.yaml"
    path.write_text(
        "models: [fake]\nsources: [ai2_science, [ai2_science, mmlu/anatomy]]\ntargets: [arc_challenge]\n"
        "seeds: [0, 1, 2]\nbudgets: [80, 120]\nrun: {steps: 1, candidates: 2, examples: 4}\n"
    )
    values = load_experiment_file(path)
    assert values["name"] == "grid"  # the file name when the file gives none
    planned = plan_experiment(values)
    assert len(planned.cells) == 2 * 2 and len(planned.runs) == 4 * 3 * 2
    data = json.loads(cli(tmp_path / "x.db", "experiment", str(path), "--dry-run", "--json")[1])
    assert len(data["runs"]) == 24 and not (tmp_path / "x.db").exists()


@pytest.mark.parametrize("name", ["experiment-smollm2.toml", "experiment-api.toml"])
def test_shipped_example_configs_plan(name: str) -> None:
    path = Path(__file__).resolve().parents[1] / "examples" / name
    planned = plan_experiment(load_experiment_file(path), where=name)
    assert planned.runs and {r.arm for r in planned.runs} == {"target_only", "transfer"}
    for cell in planned.cells:
        arms = [r for r in planned.runs if r.cell == cell]
        assert {r.config.scorer_budget for r in arms} == {cell.budget}


def test_commands_have_help_with_an_example(cli, tmp_path: Path) -> None:
    for command in ("experiment", "report"):
        code, out, _ = cli(tmp_path / "x.db", command, "--help")
        assert code == 0 and "Example: tprompt " + command in " ".join(out.split())


def test_unknown_source_task_fails_before_any_run(tmp_path: Path) -> None:
    with EventLog(tmp_path / "x.db") as log:
        with pytest.raises(UnknownTask, match="no_such_source"):
            run_experiment(log, plan_experiment({**GRID, "sources": ["no_such_source"]}))
        assert log.runs() == []


def test_parallel_scoring_stays_within_the_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # API scorers score several candidates at once; the fake one does when it is
    # not listed as local. The batch must not spend past the budget.
    monkeypatch.setattr("tprompt.config.specs.IN_PROCESS_KINDS", ("smollm2", "hf"))
    db = tmp_path / "par.db"
    with EventLog(db) as log:
        run_id = create_run(log, make_config({
            "source_tasks": [], "transfer": False, "target_task": "arc_challenge", "proposer": "fake",
            "scorer": "fake", "steps": 3, "candidates": 3, "examples": 4, "test_examples": 4, "mode": "logprob",
            "concurrency": 4, "scorer_budget": 10,
        }))
        state = Runner(log, run_id).run()
    assert state.status == "completed"
    assert train_scorer_calls(db, run_id) == state.scorer_calls["target"] == 8  # 4 + one more candidate of 4
