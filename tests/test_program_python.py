"""A program named from Python (``optimize(program=...)``) and in an experiment's ``[run]`` (issue 31), on the fake
model: one step each, the runs' candidates are the program's prompt sets."""

from __future__ import annotations

import importlib
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tprompt import optimize
from tprompt.errors import ConfigError, UsageError
from tprompt.experiments.grid import plan_experiment, run_experiment
from tprompt.stores import EventLog
from tprompt.stores.events import StepProposed

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "program"
NAMES = ["summarize", "answer"]
SMALL = {"steps": 1, "candidates": 2, "examples": 4, "test_examples": 4}
TWO_STEP = '''"""A two-prompt program for any row with a question."""
PROMPTS = {"think": "Think about the question in one sentence.", "answer": "Answer the question."}


def run(inputs, *, prompts, llm):
    note = llm.invoke([("system", prompts["think"]), ("human", inputs["question"])]).content
    return llm.invoke([("system", prompts["answer"]), ("human", inputs["question"] + "\\n" + note)]).content
'''


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A copy of the bundled example and a small program, as the working folder (programs import from there)."""
    where = tmp_path / "example"
    shutil.copytree(EXAMPLE, where, ignore=shutil.ignore_patterns("__pycache__"))
    (where / "twostep.py").write_text(TWO_STEP, encoding="utf-8")
    monkeypatch.chdir(where)
    yield where
    for name in ("pubmed", "twostep"):
        sys.modules.pop(name, None)


def program_steps(db: Path) -> list[StepProposed]:
    with EventLog(db) as log:
        (run,) = log.runs()
        assert log.state(run.run_id).status == "completed"
        return [se.event for se in log.events(run.run_id) if isinstance(se.event, StepProposed)]


@pytest.mark.parametrize("given", ["path", "function"])
def test_optimize_takes_a_program_by_import_path_or_as_its_function(folder: Path, given: str) -> None:
    db = folder / "runs.db"
    program: object = "pubmed:run"
    if given == "function":
        sys.path.insert(0, str(folder))
        try:
            program = importlib.import_module("pubmed").run
        finally:
            sys.path.remove(str(folder))
    state = optimize(db, target="pubmedqa.jsonl", transfer=False, model="fake", program=program, **SMALL)
    assert state.config is not None and state.config.program == "pubmed:run"
    original, step = program_steps(db)
    assert list(original.candidates[0].prompts or {}) == NAMES  # the run starts from the module's PROMPTS
    assert step.candidates and all(c.changed == "summarize" and list(c.prompts or {}) == NAMES
                                   for c in step.candidates)


def test_optimize_refuses_a_function_with_no_import_path_before_writing(folder: Path) -> None:
    with pytest.raises(UsageError, match="no import path a run can record"):
        optimize(folder / "runs.db", target="pubmedqa.jsonl", model="fake", program=lambda inputs, *, prompts, llm: "",
                 **SMALL)
    with pytest.raises(ConfigError, match="program nowhere:run: module nowhere does not import"):
        optimize(folder / "runs.db", target="pubmedqa.jsonl", model="fake", program="nowhere:run", **SMALL)
    assert not (folder / "runs.db").exists()


def test_an_experiment_runs_the_program_its_run_table_names(folder: Path) -> None:
    grid = {"name": "prog", "models": ["fake"], "sources": ["ai2_science"], "targets": ["arc_challenge"],
            "run": {**SMALL, "program": "twostep:run"}}
    experiment = plan_experiment(grid)
    assert all(r.config.program == "twostep:run" and '"think"' in r.config.original_prompt for r in experiment.runs)
    with EventLog(folder / "grid.db") as log:
        _, visited = run_experiment(log, experiment)
        assert [s.status for _, s in visited] == ["completed", "completed"]
        for _, state in visited:
            steps = [se.event for se in log.events(state.run_id) if isinstance(se.event, StepProposed)]
            proposed = [c for e in steps for c in e.candidates if c.origin == "proposed"]
            assert proposed and all(list(c.prompts or {}) == ["think", "answer"] for c in proposed)
    with pytest.raises(ConfigError, match="module gone does not import"):
        plan_experiment({**grid, "run": {**SMALL, "program": "gone:run"}})
