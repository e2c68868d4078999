"""Bad inputs of issue 19 (item 3): one clear line, a non-zero exit, nothing written.

Before the fixes each case here printed a traceback, three lines of Click
usage, or was accepted silently; the comment on each test says which.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli_mistakes import one_line
from test_graph import tprompt

from tprompt.errors import UsageError
from tprompt.graph.review import revise
from tprompt.stores import PromptCandidate, prompt_id_of


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    db = tmp_path_factory.mktemp("bad") / "t.db"
    proc = tprompt(db, "run", "--model", "fake", "--steps", "1", "--candidates", "1", "--examples", "2",
                   "--test-examples", "2", "--json")
    return db, json.loads(proc.stdout)["run_id"]


@pytest.mark.parametrize(("args", "needle"), [
    (["run", "--steps", "abc"], "--steps"),                    # was: Usage: ... Try ... Error: (3 lines)
    (["run", "--no-such-option"], "--no-such-option"),
    (["no-such-command"], "no-such-command"),
    (["show"], "Missing argument"),
])
def test_option_parsing_errors_are_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    line = one_line(tprompt(tmp_path / "t.db", *args, check=False), code=2)
    assert line.startswith("error: ") and needle in line and "--help" in line
    assert not (tmp_path / "t.db").exists()


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("where", ["a-file", "/dev/null", "/proc/tprompt-no-such", "x" * 300])
def test_report_out_that_cannot_be_written(small_run: tuple[Path, str], tmp_path: Path, where: str) -> None:
    # was: FileExistsError / NotADirectoryError / FileNotFoundError / OSError tracebacks
    db, run_id = small_run
    (tmp_path / "a-file").write_text("keep me")
    out = where if where.startswith("/") else str(tmp_path / where)
    before = _listing(tmp_path)
    line = one_line(tprompt(db, "report", run_id, "--out", out, check=False), code=2)
    assert line.startswith("error: --out ")
    assert _listing(tmp_path) == before and (tmp_path / "a-file").read_text() == "keep me"


@pytest.mark.parametrize("where", [".", "missing/shot.svg", "x" * 300 + ".svg"])
def test_ui_screenshot_that_cannot_be_written(small_run: tuple[Path, str], tmp_path: Path, where: str) -> None:
    # was: IsADirectoryError / FileNotFoundError tracebacks from inside Textual
    db, _ = small_run
    line = one_line(tprompt(db, "ui", "--screenshot", str(tmp_path / where), check=False), code=2)
    assert line.startswith("error: --screenshot ")
    assert _listing(tmp_path) == []


def test_eval_refuses_an_empty_prompt(tmp_path: Path) -> None:
    # was: accepted (run refuses an empty prompt)
    db = tmp_path / "t.db"
    line = one_line(tprompt(db, "eval", "--task", "arc_challenge", "--prompt", " ", "--model", "fake", check=False), code=2)
    assert "--prompt is empty" in line
    (tmp_path / "p.txt").write_text("\n")
    line = one_line(tprompt(db, "eval", "--task", "arc_challenge", "--prompt-file", str(tmp_path / "p.txt"),
                            "--model", "fake", check=False), code=2)
    assert "is empty" in line
    assert not db.exists()


def test_review_refuses_dropping_and_editing_one_candidate() -> None:
    # was: the edit was dropped without a word
    cands = [PromptCandidate(prompt_id=prompt_id_of(t), text=t, origin="proposed") for t in ("a", "b")]
    with pytest.raises(UsageError, match="candidate 1 is both dropped and edited"):
        revise(cands, drop=[1], edit={1: "new"})
    assert [c.text for c in revise(cands, drop=[2], edit={1: "new"})] == ["new"]


def test_an_experiment_budget_no_arm_can_spend_is_refused() -> None:
    # was: accepted, with target_steps capped at 1000 so the arms ended unequal without a notice
    from test_experiment import GRID

    from tprompt.errors import ConfigError
    from tprompt.experiments.grid import plan_experiment

    with pytest.raises(ConfigError, match="too large: spending it would take more than 1000 target steps"):
        plan_experiment({**GRID, "budgets": [9999999999999999]})
    assert plan_experiment({**GRID, "budgets": [2000]}).runs  # a large budget that can be spent still plans


@pytest.mark.parametrize("kind", ["fifo", "device", "huge"])
def test_a_prompt_file_that_is_not_a_small_regular_file(tmp_path: Path, kind: str) -> None:
    # was: a FIFO hung with no output; /dev/zero read until memory ran out
    import os

    if kind == "fifo":
        path = tmp_path / "p.fifo"
        os.mkfifo(path)
    elif kind == "device":
        path = Path("/dev/zero")
    else:
        path = tmp_path / "p.txt"
        path.write_text("x" * (2 << 20))
    db = tmp_path / "t.db"
    line = one_line(tprompt(db, "eval", "--task", "arc_challenge", "--prompt-file", str(path), "--model", "fake",
                            check=False), code=2)
    assert ("not a regular file" in line) if kind != "huge" else ("larger than 1 MB" in line)
    assert not db.exists()
