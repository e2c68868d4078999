"""A program's failures contained (issue 31): a program that fails on every example of the first answer set
stops the run in one line (resumable), its prints stay off the terminal and the --json output, a declared
prompt it never sends and an answer made with no recorded call are each one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_program import folder, run_id_of, run_program, write_module  # noqa: F401  (folder: a fixture)

from tprompt.cli import main
from tprompt.stores import EventLog
from tprompt.stores.events import CandidateAnswered, TestAnswered

ASK = ("llm.invoke([('system', prompts['answer']), ('human', 'Question: ' + inputs['question'] + "
       "'\\nReply in exactly this format:\\nAnswer: <one of yes / no / maybe>')]).content")


def test_a_program_failing_on_every_example_of_the_first_set_stops_the_run_in_one_line_and_resumes(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    write_module(folder, "prog_needs_flag", (
        "from pathlib import Path\n"
        "PROMPTS = {'answer': 'Answer yes, no or maybe.'}\n"
        "def run(inputs, *, prompts, llm):\n"
        "    if not Path('flag').exists():\n"
        "        raise FileNotFoundError('flag is missing\\nmore detail')\n"
        f"    return {ASK}\n"
    ))
    db = tmp_path / "t.db"
    code, _out, err = run_program(capsys, db, "prog_needs_flag:run")
    assert code != 0
    said = [line for line in err.splitlines() if "failed on every one" in line]
    assert len(said) == 1 and "program prog_needs_flag:run failed on every one of the run's first 4 examples" in said[0]
    assert "(first: FileNotFoundError: flag is missing)" in said[0] and "Traceback" not in err
    run_id = run_id_of(err)
    with EventLog(str(db)) as log:
        assert log.state(run_id).status == "failed"
        assert not any(isinstance(se.event, CandidateAnswered) for se in log.events(run_id))  # the set is not kept
    (folder / "flag").write_text("")  # the cause fixed (the module unchanged): the run resumes
    capsys.readouterr()
    assert main(["--db", str(db), "resume", run_id]) == 0, capsys.readouterr().err
    with EventLog(str(db)) as log:
        assert log.state(run_id).status == "completed"


def test_a_program_failing_on_some_examples_of_the_first_set_goes_on(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    write_module(folder, "prog_half", (
        "PROMPTS = {'answer': 'Answer yes, no or maybe.'}\n"
        "seen = []\n"
        "def run(inputs, *, prompts, llm):\n"
        "    seen.append(1)\n"
        "    if len(seen) == 1:\n"
        "        raise ValueError('first row')\n"
        f"    return {ASK}\n"
    ))
    code, _out, err = run_program(capsys, tmp_path / "t.db", "prog_half:run")
    assert code == 0, err
    assert "program prog_half:run: failed on 1 answer(s)" in err


def test_what_a_program_prints_stays_off_the_terminal_and_the_json_output(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    write_module(folder, "prog_chatty", (
        "import sys\n"
        "print('chatty import')  # on stderr, not in the --json output\n"
        "PROMPTS = {'answer': 'Answer yes, no or maybe.'}\n"
        "def run(inputs, *, prompts, llm):\n"
        "    print('[bold red]chatty out', inputs['question'][:20])\n"
        "    print('chatty err', file=sys.stderr)\n"
        "    sys.stdout.flush()\n"
        f"    return {ASK}\n"
    ))
    code, out, err = run_program(capsys, tmp_path / "t.db", "prog_chatty:run", "--json")
    assert code == 0, err
    assert "chatty" not in out
    assert json.loads(out)["status"] == "completed"  # stdout is the JSON document alone
    mentioned = [line for line in err.splitlines() if "chatty" in line]
    assert len(mentioned) == 2 and mentioned[0] == "chatty import"
    assert mentioned[1].startswith("program prog_chatty:run: printed ")
    assert "(first: [bold red]chatty out" in mentioned[1]  # shown as text, not as markup


def test_a_declared_prompt_the_program_never_sends_is_one_line_naming_it(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    write_module(folder, "prog_unused", (
        "PROMPTS = {'answer': 'Answer yes, no or maybe.', 'polish': 'Polish the answer.'}\n"
        "def run(inputs, *, prompts, llm):\n"
        f"    return {ASK}\n"
    ))
    code, _out, err = run_program(capsys, tmp_path / "t.db", "prog_unused:run")
    assert code == 0, err
    named = [line for line in err.splitlines() if "was in none of the" in line]
    assert len(named) == 1 and "its prompt 'polish' was in none of the 4 calls of its first 4 examples" in named[0]
    assert "'answer'" not in named[0]


def test_an_answer_made_with_no_recorded_call_is_reported(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    write_module(folder, "prog_offline", (
        "PROMPTS = {'answer': 'Answer yes, no or maybe.'}\n"
        "def run(inputs, *, prompts, llm):\n"
        "    if 'a' in inputs['question'][:3]:\n"
        "        return 'Answer: yes'  # as if another model had answered: nothing goes through llm\n"
        f"    return {ASK}\n"
    ))
    db = tmp_path / "t.db"
    code, _out, err = run_program(capsys, db, "prog_offline:run")
    assert code == 0, err
    with EventLog(str(db)) as log:
        answers = [a for se in log.events(run_id_of(err)) if isinstance(se.event, (CandidateAnswered, TestAnswered))
                   for a in se.event.answers]
    uncalled = sum(a.call_id is None for a in answers)
    assert 0 < uncalled < len(answers)
    said = [line for line in err.splitlines() if "made no call through the llm" in line]
    assert len(said) == 1 and f"{uncalled}" in said[0].split("answer(s)")[0]


def test_a_program_that_calls_sys_exit_is_a_failed_answer_and_at_import_one_line(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    """``sys.exit`` in user code is that row's failure, not the end of tprompt (as with metrics, issue 32)."""
    write_module(folder, "prog_exits", (
        "import sys\n"
        "PROMPTS = {'answer': 'Answer yes, no or maybe.'}\n"
        "seen = []\n"
        "def run(inputs, *, prompts, llm):\n"
        "    seen.append(1)\n"
        "    if len(seen) == 1:\n"
        "        sys.exit(3)\n"
        f"    return {ASK}\n"
    ))
    code, _out, err = run_program(capsys, tmp_path / "t.db", "prog_exits:run")
    assert code == 0, err
    assert "program prog_exits:run: failed on 1 answer(s)" in err and "SystemExit" in err

    write_module(folder, "prog_exits_at_import", "import sys\nsys.exit(0)\n")
    db = tmp_path / "imp.db"
    code, _out, err = run_program(capsys, db, "prog_exits_at_import:run")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "module prog_exits_at_import does not import (SystemExit" in lines[0], err
    assert not db.exists()
