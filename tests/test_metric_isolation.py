"""Issue 32: a user's metric runs in a worker process; its exits, interrupts, hangs and prints cannot take a run down.

Each case here ended, hung or corrupted the run while metrics ran in the run's own process.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import paused_by, wait_gone, worker_inside
from test_cli_mistakes import one_line

from tprompt.evaluator import load_task, metric_worker
from tprompt.evaluator.registry import resolve_metrics
from tprompt.stores.events import Answer

SMALL = ["--steps", "1", "--candidates", "2", "--top-k", "1", "--examples", "4", "--test-examples", "4"]
OPEN = ["--source", "pubmedqa_long", "--target", "pubmedqa_long", *SMALL]
ESC = "\x1b"


def _module(folder: Path, body: str) -> Path:
    (folder / "usermetrics.py").write_text("import os, sys, time\nfrom tprompt import metric\n" + body)
    return folder


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "TPROMPT_DB": str(tmp_path / "t.db"), "TPROMPT_HOME": str(tmp_path / "home"), **extra}


def _cli(tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tprompt.cli", *args], capture_output=True, text=True,
                          env=_env(tmp_path, **extra), cwd=tmp_path, timeout=600)


def _undefined(db: Path) -> int:
    """The examples on which metric ``f`` was undefined, over every score and test result of every run."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT payload FROM events WHERE type IN ('candidate.scored', 'prompt.tested')").fetchall()
    return sum(json.loads(p).get("undefined", {}).get("f", 0) for (p,) in rows)


# Fails on every row whose id ends in an even digit (the rows a run samples are not known up front).
FAILS_ON_SOME = """
@metric(name="f")
def f(example, answer):
    if int(example.id[-1]) % 2 == 0:
        {how}
    return 0.5
"""


@pytest.mark.parametrize("how", ["raise SystemExit(0)", "raise SystemExit(5)", "raise KeyboardInterrupt",
                                 "os._exit(3)"])
def test_a_metric_that_exits_or_interrupts_is_undefined_there_and_the_run_finishes(tmp_path: Path, how: str) -> None:
    _module(tmp_path, FAILS_ON_SOME.format(how=how))
    proc = _cli(tmp_path, "run", "--json", "--model", "fake", *OPEN, "--metric", "usermetrics:f")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "completed"
    assert _undefined(tmp_path / "t.db") > 0
    assert "metric usermetrics:f: failed on" in " ".join(proc.stderr.split())
    log = (tmp_path / "home" / "logs" / "metrics.log").read_text()
    assert "metric usermetrics:f failed on example pubmedqa_long-" in log


@pytest.mark.parametrize("how", ["raise SystemExit(0)", "raise KeyboardInterrupt"])
def test_rescore_with_a_metric_that_exits_writes_its_fork(tmp_path: Path, how: str) -> None:
    first = _cli(tmp_path, "run", "--json", "--model", "fake", *OPEN, "--metric", "rouge_l")
    run_id = json.loads(first.stdout)["run_id"]
    _module(tmp_path, FAILS_ON_SOME.format(how=how))
    proc = _cli(tmp_path, "rescore", run_id, "--metric", "usermetrics:f", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["run_id"] != run_id and data["status"] == "completed"
    assert _undefined(tmp_path / "t.db") > 0


@pytest.mark.parametrize("body, words", [
    ("raise SystemExit(0)\n", "importing it raised SystemExit: 0"),
    ("raise SystemExit(5)\n", "importing it raised SystemExit: 5"),
    ("raise KeyboardInterrupt\n", "importing it raised KeyboardInterrupt"),
    ("os._exit(0)\n", "the process importing it exited"),
    ("time.sleep(3600)\n", "importing it took longer than 2 s"),
])
def test_a_module_that_exits_or_hangs_at_import_is_one_line_and_nothing_is_written(
        tmp_path: Path, body: str, words: str) -> None:
    _module(tmp_path, body + "def f(example, answer):\n    return 0.5\n")
    proc = _cli(tmp_path, "run", "--model", "fake", *OPEN, "--metric", "usermetrics:f", "--metric-timeout", "2")
    assert proc.returncode not in (0, 130)
    line = one_line(proc)
    assert "metric usermetrics:f" in line and words in line
    assert not (tmp_path / "t.db").exists()


HANGS = """
@metric(name="f")
def f(example, answer):
    with open(os.environ["METRIC_MARK"], "w") as mark:
        mark.write(str(os.getpid()))
    while True:
        time.sleep(1)
"""



def _start_hanging_run(tmp_path: Path, mark: Path) -> subprocess.Popen[str]:
    _module(tmp_path, HANGS)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tprompt.cli", "run", "--json", "--model", "fake", *OPEN, "--metric", "usermetrics:f"],
        env=_env(tmp_path, METRIC_MARK=str(mark)), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    worker_inside(proc, mark)  # the metric marks the moment it is inside the call
    return proc


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_hanging_metric_does_not_stop_a_pause(tmp_path: Path, sig: signal.Signals) -> None:
    mark = tmp_path / "in_metric"
    proc = _start_hanging_run(tmp_path, mark)
    paused_by(sig, proc, int(mark.read_text()))  # the default metric_timeout is 30 s: a pause must not wait for it


def test_the_worker_of_a_killed_run_ends_with_it(tmp_path: Path) -> None:
    mark = tmp_path / "in_metric"
    proc = _start_hanging_run(tmp_path, mark)
    worker_pid = int(mark.read_text())
    proc.kill()
    proc.communicate()
    wait_gone(worker_pid)  # it notices its parent is gone even inside a hung metric


def test_a_metric_past_metric_timeout_is_undefined_there_and_the_run_finishes(tmp_path: Path) -> None:
    _module(tmp_path, FAILS_ON_SOME.format(how="time.sleep(3600)"))
    proc = _cli(tmp_path, "run", "--json", "--model", "fake", *OPEN, "--metric", "usermetrics:f",
                "--metric-timeout", "1")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "completed"
    n = _undefined(tmp_path / "t.db")
    assert n > 0
    line = " ".join(proc.stderr.split())
    assert f"metric usermetrics:f: failed on {n} example(s)" in line
    assert "(first: no result within metric_timeout (1 s))" in line


PRINTS = """
print("\\x1b[2J\\x1b]0;pwned\\x07 at import")
@metric(name="f")
def f(example, answer):
    print("\\x1b[31mred from the metric\\x1b[0m")
    sys.stderr.write("\\x1b[2Kerr from the metric\\n")
    os.write(1, b"\\x1b[5m raw fd write\\n")
    return 0.5
"""


def test_what_a_metric_prints_goes_to_the_log_not_the_terminal_or_json(tmp_path: Path) -> None:
    _module(tmp_path, PRINTS)
    proc = _cli(tmp_path, "run", "--json", "--model", "fake", *OPEN, "--metric", "usermetrics:f")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "completed"  # stdout is the JSON document, nothing else
    assert ESC not in proc.stdout and ESC not in proc.stderr
    log = (tmp_path / "home" / "logs" / "metrics.log").read_text()
    assert "at import" in log and "red from the metric" in log and "err from the metric" in log
    assert "raw fd write" in log


def test_metric_set_in_process_api_counts_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The Python API (resolve_metrics + compute) gets the same containment as the CLI.
    monkeypatch.setenv("TPROMPT_HOME", str(tmp_path / "home"))
    _module(tmp_path, FAILS_ON_SOME.format(how="raise SystemExit(0)").replace('name="f"', 'name="g"')
            .replace("def f(", "def g("))
    monkeypatch.syspath_prepend(str(tmp_path))
    metric_worker.reset()
    task = load_task("pubmedqa_long")
    ms = resolve_metrics(["usermetrics:g"], timeout=30)
    answers = [Answer(example_id=e.id, parsed="x", confidence=0.5, followed_format=True, correct=False)
               for e in task.test[:6]]
    values, undefined = ms.compute(answers, task)
    even = sum(int(e.id[-1]) % 2 == 0 for e in task.test[:6])
    assert undefined.get("g", 0) == even
    assert values["g"] == (0.5 if even < 6 else None)
    assert ms.failures["usermetrics:g"][0] == even
    metric_worker.reset()


def test_values_and_feedback_come_back_from_the_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TPROMPT_HOME", str(tmp_path / "home"))
    _module(tmp_path, "@metric(name='fb')\ndef fb(example, answer):\n    return 0.25, 'too long: ' + example.id\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    metric_worker.reset()
    task = load_task("pubmedqa_long")
    ms = resolve_metrics(["usermetrics:fb"])
    assert ms.metrics[0].isolated
    answers = [Answer(example_id=e.id, parsed="x", confidence=0.5, followed_format=True, correct=False)
               for e in task.test[:3]]
    done = ms.compute_all(answers, task)
    assert done.values["fb"] == 0.25 and done.undefined == {}
    assert done.feedback["fb"] == {e.id: f"too long: {e.id}" for e in task.test[:3]}
    metric_worker.reset()
