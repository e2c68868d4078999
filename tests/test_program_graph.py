"""A program given as a factory build(prompts, llm) of a LangChain Runnable or a compiled LangGraph graph
(issue 31): the bundled LangGraph example answers as the function example does, every call through the
recorder under agent `program` naming its prompt; a LangChain chain works too; bad factories are one line."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from test_program import NAMES, RUN, folder, run_id_of, run_program, start, write_module  # noqa: F401  (folder: a fixture)

from tprompt.cli import main
from tprompt.evaluator.program import load_program
from tprompt.graph.api import comparable_events
from tprompt.stores import EventLog
from tprompt.stores.events import CandidateAnswered, TestAnswered


def program_calls(db: Path, run_id: str) -> list[tuple[str, list[str]]]:
    """(agent, prompt refs) of each of the run's calls."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT t.agent, b.body FROM transcripts t JOIN bodies b ON b.hash = t.request_hash "
                            "WHERE t.run_id = ? ORDER BY t.rowid", (run_id,)).fetchall()
    return [(agent, json.loads(body).get("templates", [])) for agent, body in rows]


def test_the_langgraph_example_is_a_factory_and_answers_as_the_function_example_does(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    assert load_program("pubmed_graph:build").kind == "build" and load_program("pubmed:run").kind == "run"
    graph_db, fn_db = tmp_path / "graph.db", tmp_path / "fn.db"
    capsys.readouterr()
    args = [a if a != "pubmed:run" else "pubmed_graph:build" for a in RUN]
    assert main(["--db", str(graph_db), *args, "--model", "fake"]) == 0
    graph_run = run_id_of(capsys.readouterr().err)
    fn_run = start(capsys, fn_db)
    with EventLog(str(graph_db)) as a, EventLog(str(fn_db)) as b:
        assert a.state(graph_run).status == "completed"
        # the same requests, so the same answers, candidates and scores as the function version
        assert comparable_events(a, graph_run)[1:] == comparable_events(b, fn_run)[1:]
        answered = [se.event for se in a.events(graph_run) if isinstance(se.event, (CandidateAnswered, TestAnswered))]
    assert all(ans.output is not None and ans.error is None for e in answered for ans in e.answers)
    calls = program_calls(graph_db, graph_run)
    named = [refs for agent, refs in calls if agent == "program"]
    assert {agent for agent, _ in calls} == {"program", "proposer"}  # every answer's call through the recorder
    assert all(len(refs) == 1 for refs in named)
    assert sorted({refs[0].split("@")[0] for refs in named}) == [f"program.{n}" for n in sorted(NAMES)]
    assert len(named) == 2 * sum(len(e.answers) for e in answered)  # summarize then answer, per row
    for name in NAMES:
        capsys.readouterr()
        assert main(["--db", str(graph_db), "transcript", graph_run, "--prompt", name, "--json"]) == 0
        listed = json.loads(capsys.readouterr().out)
        assert len(listed) == len(named) // 2 and all(r["agent"] == "program" for r in listed)


def test_a_langchain_runnable_factory_is_a_program(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    write_module(folder, "prog_chain", (
        "from langchain_core.output_parsers import StrOutputParser\n"
        "from langchain_core.prompts import ChatPromptTemplate\n"
        "PROMPTS = {'answer': 'Answer the research question: yes, no or maybe.'}\n"
        "def build(prompts, llm):\n"
        "    prompt = ChatPromptTemplate.from_messages([('system', prompts['answer']),\n"
        "        ('human', 'Question: {question}\\nReply in exactly this format:\\nAnswer: <one of yes / no / maybe>')])\n"
        "    return prompt | llm | StrOutputParser()\n"
    ))
    db = tmp_path / "t.db"
    code, _, err = run_program(capsys, db, "prog_chain:build")
    assert code == 0
    run_id = run_id_of(err)
    assert "program prog_chain:build" not in err  # no failure, print or unused-prompt line
    with EventLog(str(db)) as log:
        answers = [a for se in log.events(run_id) if isinstance(se.event, CandidateAnswered) for a in se.event.answers]
    assert answers and all(a.output and a.call_id for a in answers)
    assert {refs[0].split("@")[0] for agent, refs in program_calls(db, run_id) if agent == "program"} == {
        "program.answer"}


@pytest.mark.parametrize(("module", "body", "said"), [
    ("prog_onearg", "PROMPTS = {'a': 'x'}\ndef build(prompts):\n    return None\n",
     "build takes (prompts), neither run(inputs, *, prompts, llm) nor build(prompts, llm)"),
    ("prog_threeargs", "PROMPTS = {'a': 'x'}\ndef build(prompts, llm, extra):\n    return None\n", "build takes (prompts, llm, extra)"),
])
def test_a_factory_with_other_parameters_is_one_line(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], module: str, body: str, said: str,  # noqa: F811
) -> None:
    write_module(folder, module, body)
    db = tmp_path / "t.db"
    capsys.readouterr()
    code = main(["--db", str(db), "run", "--program", f"{module}:build", "--target", "pubmedqa.jsonl",
                 "--model", "fake"])
    err = capsys.readouterr().err
    assert code == 2 and said in err and "Traceback" not in err, err
    assert not db.exists()


def test_a_factory_returning_no_runnable_stops_at_the_first_set(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    write_module(folder, "prog_nothing", "PROMPTS = {'a': 'x'}\ndef build(prompts, llm):\n    return 'a string'\n")
    capsys.readouterr()
    code = main(["--db", str(tmp_path / "t.db"), "run", "--program", "prog_nothing:build", "--target",
                 "pubmedqa.jsonl", "--model", "fake", "--examples", "4"])
    err = capsys.readouterr().err
    said = "failed on every one of the run's first 4 examples (first: TypeError: prog_nothing:build returned a str"
    assert code == 1 and said in err and "not a Runnable" in err, err


def test_a_program_answers_rows_concurrently_with_the_events_of_a_serial_run(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    serial, wide = tmp_path / "serial.db", tmp_path / "wide.db"
    one = start(capsys, serial, "--concurrency", "1", model="fake:delay=0.01")
    three = start(capsys, wide, "--concurrency", "3", model="fake:delay=0.01")
    with EventLog(str(serial)) as a, EventLog(str(wide)) as b:
        assert b.state(three).status == "completed"
        assert comparable_events(a, one)[1:] == comparable_events(b, three)[1:]  # after run.created (its config)


def test_rows_of_a_program_are_in_flight_together(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    write_module(folder, "prog_gate", (
        "import threading\n"
        "PROMPTS = {'answer': 'Answer yes, no or maybe.'}\n"
        "gate, lock, started = threading.Barrier(2, timeout=30), threading.Lock(), []\n"
        "def run(inputs, *, prompts, llm):\n"
        "    with lock:\n"
        "        started.append(1)\n"
        "        mine = len(started)\n"
        "    if mine <= 2:\n"
        "        gate.wait()  # passes only with the first two rows in flight at once\n"
        "    first, second = llm.batch([[('system', prompts['answer']), ('human', inputs['question'])],\n"
        "                               [('human', 'Reply in exactly this format:\\nAnswer: yes')]])\n"
        "    return second.content\n"
    ))
    db = tmp_path / "t.db"
    code, _, err = run_program(capsys, db, "prog_gate:run", "--concurrency", "2")
    assert code == 0
    run_id = run_id_of(err)
    with EventLog(str(db)) as log:
        answers = [a for se in log.events(run_id) if isinstance(se.event, (CandidateAnswered, TestAnswered))
                   for a in se.event.answers]
    assert answers and all(a.error is None for a in answers)
    # the two calls of each row's llm.batch (in parallel inside the row) both recorded
    assert len([agent for agent, _ in program_calls(db, run_id) if agent == "program"]) == 2 * len(answers)
