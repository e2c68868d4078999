"""Progress a person can trust (issue 33): per example within a batch, a stage ETA from the steps done,
one line per step in a log, one line before the embedded model is fetched."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tprompt.commands._progress import StageEta, clock
from tprompt.evaluator import load_task
from tprompt.evaluator.scoring import answer_prompt
from tprompt.models import Recorder, get_model
from tprompt.stores import EventLog


def test_stage_eta_is_the_mean_step_time_times_the_steps_left() -> None:
    eta = StageEta()
    assert eta.seconds_left(5, 0.0) is None  # nothing seen
    eta.step_done("source", 1, 100.0)  # resumed: step 1 may have started before this process
    assert eta.seconds_left(5, 100.0) is None  # one step seen: no rate yet
    eta.step_done("source", 2, 110.0)
    assert eta.seconds_left(5, 110.0) == pytest.approx(30.0)  # 10 s a step, 3 to go
    eta.step_done("source", 3, 130.0)
    assert eta.seconds_left(5, 130.0) == pytest.approx(30.0)  # (130-100)/2 = 15 s a step, 2 to go
    assert eta.seconds_left(5, 140.0) == pytest.approx(20.0)  # counted down between steps
    assert eta.seconds_left(5, 500.0) == 0.0  # late: never negative
    eta.step_done("target", 0, 600.0)  # a new stage starts over
    assert eta.stage == "target" and eta.seconds_left(5, 600.0) is None
    assert (clock(75), clock(3725)) == ("1:15", "1:02:05")


@pytest.mark.parametrize("mode", ["logprob", "generate"])
def test_scoring_reports_every_example_of_a_batch(mode: str) -> None:
    task = load_task("arc_challenge")
    examples = task.sample(10, split="test", seed=0)
    seen: list[tuple[int, int]] = []
    with EventLog(":memory:") as log, Recorder(log) as recorder:
        answer_prompt("Answer.", examples, task=task, model=get_model("fake"), recorder=recorder.at("scorer"),
                      mode=mode, batch_size=32, progress=lambda done, total: seen.append((done, total)))
    # One batch of 32 holds all ten: before, 0/10 then 10/10; now each answer as it comes.
    assert [d for d, _ in seen][:11] == list(range(11)) and {t for _, t in seen} == {10}
    assert seen[-1] == (10, 10)


def test_a_run_logs_one_line_per_step_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    env = {**os.environ, "TPROMPT_DB": str(tmp_path / "t.db")}
    proc = subprocess.run(
        [sys.executable, "-m", "tprompt.cli", "run", "--source", "ai2_science", "--target", "arc_challenge",
         "--model", "fake", "--steps", "3", "--candidates", "2", "--examples", "4", "--test-examples", "4"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    steps = [line for line in lines if re.match(r"(source|target) step \d", line)]
    pattern = r"(source|target) step (\d)/3 done: best training objective \d\.\d{3}( \(about \d+:\d\d left in the stage\))?"
    assert all(re.fullmatch(pattern, line) for line in steps), steps
    assert [(m.group(1), int(m.group(2))) for m in (re.match(pattern, s) for s in steps) if m] == [
        (stage, k) for stage in ("source", "target") for k in range(4)]
    # No bar, no spinner, no carriage return: a log reads line by line.
    assert "\r" not in proc.stderr and "\x1b" not in proc.stderr and "━" not in proc.stderr


def test_one_line_in_a_log_before_the_embedded_model_is_fetched(capsys: pytest.CaptureFixture[str]) -> None:
    from tprompt.models import _fetch

    with _fetch._progress() as say:  # capsys: stderr is not a terminal
        say("downloading")
        say("converting")
    err = capsys.readouterr().err
    assert err.splitlines() == [f"{_fetch.PREPARING}: fetching and converting it once (about a minute)"]
