"""A user's program runs in a worker process (issues 31, 32): a row that hangs or calls ``os._exit`` is that row's
failed answer, a pause is prompt whatever the program does, and a module that hangs at import is one line.

Each case here hung or ended the run while programs ran in the run's own process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import paused_by, worker_inside
from test_cli_mistakes import one_line

from tprompt.graph.api import comparable_events
from tprompt.stores import EventLog
from tprompt.stores.events import CandidateAnswered, TestAnswered

SMALL = ["--steps", "1", "--candidates", "1", "--examples", "4", "--test-examples", "4"]
ASK = ("llm.invoke([('system', prompts['answer']), ('human', 'Question: ' + inputs['question'] + "
       "'\\nReply in exactly this format:\\nAnswer: <one of yes / no / maybe>')]).content")
# The row that first takes the marker misbehaves ({how}), each time it is answered; every other row answers.
ONCE = """import os, time
PROMPTS = {{'answer': 'Answer yes, no or maybe.'}}
def run(inputs, *, prompts, llm):
    try:
        fd = os.open('taken', os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.write(fd, inputs['question'].encode())
        os.close(fd)
    except FileExistsError:
        pass
    with open('taken') as taken:
        if taken.read() == inputs['question']:
            {how}
    return {ask}
"""
# Every row hangs while the file HANG exists, after writing the worker's pid to MARK.
HANGS = """import os, time
PROMPTS = {{'answer': 'Answer yes, no or maybe.'}}
def run(inputs, *, prompts, llm):
    while os.path.exists('HANG'):
        with open(os.environ['MARK'], 'w') as mark:
            mark.write(str(os.getpid()))
        time.sleep(0.5)
    return {ask}
"""


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "TPROMPT_HOME": str(tmp_path / "home"), **extra}


def _cli(tmp_path: Path, db: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tprompt.cli", "--db", db, *args], capture_output=True, text=True,
                          env=_env(tmp_path), cwd=tmp_path, timeout=900)


def _run_args(program: str, *extra: str) -> list[str]:
    return ["run", "--json", "--program", program, "--target", "pubmedqa.jsonl", "--model", "fake", *SMALL, *extra]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    rows = Path(__file__).resolve().parents[1] / "examples" / "program" / "pubmedqa.jsonl"
    (tmp_path / "pubmedqa.jsonl").write_text(rows.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "fast.toml").write_text("program_timeout = 3\n")
    return tmp_path


def _errors(db: Path) -> tuple[set[str], list[str]]:
    """The examples of a completed run's failed answers, and their errors."""
    with EventLog(str(db)) as log:
        (run,) = log.runs()
        assert log.state(run.run_id).status == "completed"
        failed = [a for se in log.events(run.run_id) if isinstance(se.event, (CandidateAnswered, TestAnswered))
                  for a in se.event.answers if a.error is not None]
        return {a.example_id for a in failed}, [str(a.error) for a in failed]


@pytest.mark.parametrize(("how", "reason"), [
    ("while True: time.sleep(1)", "no answer within program_timeout (3 s)"),
    ("os._exit(3)", "the program ended its worker process"),
])
def test_a_row_that_hangs_or_ends_its_process_is_that_rows_failed_answer(folder: Path, how: str, reason: str) -> None:
    (folder / "once.py").write_text(ONCE.format(ask=ASK, how=how))
    proc = _cli(folder, str(folder / "t.db"), *_run_args("once:run", "--config", "fast.toml"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "completed"
    examples, errors = _errors(folder / "t.db")
    assert len(examples) == 1 and errors and set(errors) == {reason}  # that row alone: the rows beside it answered
    assert (f"program once:run: failed on {len(errors)} answer(s), each recorded as a wrong answer (first: {reason})"
            in " ".join(proc.stderr.split()))


def test_a_program_that_hangs_at_import_is_one_line_and_nothing_is_written(folder: Path) -> None:
    (folder / "slow.py").write_text("import time\ntime.sleep(3600)\nPROMPTS = {'answer': 'a'}\n"
                                    "def run(inputs, *, prompts, llm):\n    return 'yes'\n")
    proc = _cli(folder, str(folder / "t.db"), *_run_args("slow:run", "--config", "fast.toml"))
    assert proc.returncode == 2
    line = one_line(proc)
    assert "program slow:run: importing it took longer than 3 s" in line
    assert not (folder / "t.db").exists()



@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_pause_while_every_row_hangs_is_prompt_and_resumes_to_the_same_events(folder: Path, sig: signal.Signals
                                                                               ) -> None:
    (folder / "hangs.py").write_text(HANGS.format(ask=ASK))
    reference = _cli(folder, str(folder / "ref.db"), *_run_args("hangs:run"))  # no HANG file: it answers
    assert reference.returncode == 0, reference.stderr

    (folder / "HANG").write_text("")
    mark = folder / "in_program"
    proc = subprocess.Popen([sys.executable, "-m", "tprompt.cli", "--db", str(folder / "t.db"), *_run_args("hangs:run")],
                            env=_env(folder, MARK=str(mark)), cwd=folder, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    worker_pid = worker_inside(proc, mark)  # the program marks the moment it is inside a row
    paused = paused_by(sig, proc, worker_pid)  # the default program_timeout is 60 s: a pause must not wait for it

    (folder / "HANG").unlink()
    run_id = paused["run_id"]
    resumed = _cli(folder, str(folder / "t.db"), "resume", run_id, "--json")
    assert resumed.returncode == 0, resumed.stderr
    with EventLog(str(folder / "ref.db")) as ref, EventLog(str(folder / "t.db")) as log:
        (ref_run,) = ref.runs()
        assert comparable_events(log, run_id) == comparable_events(ref, ref_run.run_id)


def test_what_a_row_writes_to_its_file_descriptors_goes_to_the_program_log(folder: Path) -> None:
    """A print is counted and logged; a write straight to fd 1 or 2 (a subprocess, C code) is logged too (it
    reached the terminal, and the --json output, while programs ran in the run's process)."""
    (folder / "loud.py").write_text(
        "import os\nPROMPTS = {'answer': 'Answer yes, no or maybe.'}\n"
        "def run(inputs, *, prompts, llm):\n"
        "    print('\\x1b[31mprinted by the row')\n"
        "    os.write(1, b'\\x1b[2Jraw fd 1\\n')\n"
        "    os.write(2, b'raw fd 2\\n')\n"
        f"    return {ASK}\n")
    proc = _cli(folder, str(folder / "t.db"), *_run_args("loud:run"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "completed"  # stdout is the JSON document alone
    assert "raw fd" not in proc.stderr and "\x1b" not in proc.stdout + proc.stderr
    log = (folder / "home" / "logs" / "programs.log").read_text()
    assert "printed by the row" in log and "raw fd 1" in log and "raw fd 2" in log
    assert "program loud:run: printed " in " ".join(proc.stderr.split())
