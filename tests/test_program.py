"""A user's program with several named prompts, optimized on the fake model (issue 31): the bundled example
end to end, its calls recorded by prompt name, resume and rescore at no extra call, and its bad inputs."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from tprompt.cli import main
from tprompt.graph.api import comparable_events
from tprompt.stores import EventLog
from tprompt.stores.events import CandidateAnswered, StepProposed, TestAnswered

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "program"
NAMES = ["summarize", "answer"]
RUN = ["run", "--program", "pubmed:run", "--target", "pubmedqa.jsonl", "--steps", "2", "--candidates", "2",
       "--examples", "4", "--test-examples", "4"]


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the bundled example, as the working folder (the program imports from there)."""
    where = tmp_path / "example"
    shutil.copytree(EXAMPLE, where, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.chdir(where)
    return where


def run_id_of(err: str) -> str:
    return next(w for w in err.split() if w.startswith("r-"))


def start(capsys: pytest.CaptureFixture[str], db: Path, *extra: str, model: str = "fake") -> str:
    capsys.readouterr()
    code = main(["--db", str(db), *RUN, "--model", model, *extra])
    err = capsys.readouterr().err
    assert code == 0, err
    return run_id_of(err)


def run_program(capsys: pytest.CaptureFixture[str], db: Path, program: str, *extra: str) -> tuple[int, str, str]:
    """``tprompt run --program PROGRAM`` on pubmedqa, one step of one candidate on 4 examples: exit code, stdout,
    stderr."""
    capsys.readouterr()
    code = main(["--db", str(db), "run", "--program", program, "--target", "pubmedqa.jsonl", "--model", "fake",
                 "--steps", "1", "--candidates", "1", "--examples", "4", "--test-examples", "4", *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def exported_json(capsys: pytest.CaptureFixture[str], db: Path, run_id: str) -> dict:
    """``tprompt export RUN --format json``, read."""
    capsys.readouterr()
    assert main(["--db", str(db), "export", run_id, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def calls_paid(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_the_example_program_runs_one_prompt_per_step_with_every_call_under_its_prompt_name(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "t.db"
    run_id = start(capsys, db)
    with EventLog(str(db)) as log:
        state = log.state(run_id)
        events = [se.event for se in log.events(run_id)]
    assert state.status == "completed"
    steps = [e for e in events if isinstance(e, StepProposed)]
    original = steps[0].candidates[0]
    assert original.origin == "original" and list(original.prompts or {}) == NAMES and original.changed is None
    best_before: dict[str, str] = dict(original.prompts or {})
    for e in steps[1:]:
        changed = NAMES[(e.step - 1) % 2]  # round-robin by step: summarize, then answer
        assert e.candidates, "the fake proposer's instructions are accepted"
        for c in e.candidates:
            assert c.changed == changed and c.prompts is not None and list(c.prompts) == NAMES
            assert c.text == json.dumps(c.prompts, ensure_ascii=False)
            kept = [n for n in NAMES if n != changed]
            assert all(c.prompts[n] == best_before[n] for n in kept)  # the others held at the stage's best so far
            assert c.prompts[changed] != best_before[changed]
        best = max((s for s in state.history("target") if s.step < e.step + 1), key=lambda s: s.objective)
        best_before = json.loads(best.text)
    answered = [e for e in events if isinstance(e, (CandidateAnswered, TestAnswered))]
    assert answered and all(a.mode == "generate" for a in answered)
    assert all(ans.output is not None and ans.error is None for a in answered for ans in a.answers)
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT t.agent, b.body FROM transcripts t JOIN bodies b ON b.hash = t.request_hash "
                            "WHERE t.run_id = ?", (run_id,)).fetchall()
    agents = {agent for agent, _ in rows}
    assert agents == {"program", "proposer"}  # no bare scorer call: the program answers every row
    named = [json.loads(body).get("templates", []) for agent, body in rows if agent == "program"]
    # two calls per row: the summary then the answer, each naming the one prompt whose text it carries
    assert all(len(refs) == 1 for refs in named)
    assert sorted({refs[0].split("@")[0] for refs in named}) == ["program.answer", "program.summarize"]
    assert len(named) == 2 * sum(len(a.answers) for a in answered)
    for name in NAMES:  # the transcripts by prompt name
        capsys.readouterr()
        assert main(["--db", str(db), "transcript", run_id, "--prompt", name, "--json"]) == 0
        listed = json.loads(capsys.readouterr().out)
        assert len(listed) == len(named) // 2 and all(r["prompts"] == [name] and r["agent"] == "program" for r in listed)


def test_show_and_export_give_every_prompt_of_the_best_set(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "t.db"
    run_id = start(capsys, db)
    exported = exported_json(capsys, db, run_id)
    assert list(exported["prompts"]) == NAMES and exported["program"] == "pubmed:run"
    assert exported["prompt"] == json.dumps(exported["prompts"], ensure_ascii=False)
    assert main(["--db", str(db), "export", run_id]) == 0
    text = capsys.readouterr().out
    assert all(f"[{n}]" in text for n in NAMES)
    assert main(["--db", str(db), "show", run_id]) == 0
    shown = capsys.readouterr().out
    for name, prompt in exported["prompts"].items():
        assert name in shown and prompt.split()[0] in shown


def test_resume_after_a_pause_pays_no_call_twice_and_writes_the_same_events(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    whole, cut = tmp_path / "whole.db", tmp_path / "cut.db"
    whole_calls, cut_calls = tmp_path / "whole.calls", tmp_path / "cut.calls"
    straight = start(capsys, whole, model=f"fake:calls={whole_calls}")
    paused = start(capsys, cut, "--max-rollouts", "9", model=f"fake:calls={cut_calls}")
    with EventLog(str(cut)) as log:
        assert log.state(paused).status == "paused"
    before = calls_paid(cut_calls)
    assert 0 < before < calls_paid(whole_calls)
    capsys.readouterr()
    assert main(["--db", str(cut), "resume", paused]) == 0, capsys.readouterr().err
    assert calls_paid(cut_calls) == calls_paid(whole_calls)  # the resumed run paid only what was left
    with EventLog(str(whole)) as a, EventLog(str(cut)) as b:
        assert b.state(paused).status == "completed"
        # the same events after run.created (whose config names each run's own calls file)
        assert comparable_events(a, straight)[1:] == comparable_events(b, paused)[1:]
    # as many answers from the cache as in the run never paused (a held prompt's calls are reused in both)
    assert cache_hits(cut) == cache_hits(whole) > 0


def cache_hits(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM transcripts WHERE agent = 'program' AND cache_hit").fetchone()[0])


def test_rescore_of_a_program_run_makes_no_call(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db, calls = tmp_path / "t.db", tmp_path / "calls"
    run_id = start(capsys, db, model=f"fake:calls={calls}")
    paid = calls_paid(calls)
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT count(*) FROM transcripts").fetchone()[0]
    capsys.readouterr()
    assert main(["--db", str(db), "rescore", run_id, "--metric", "exact_match", "--weight", "accuracy=2"]) == 0, \
        capsys.readouterr().err
    assert calls_paid(calls) == paid
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM transcripts").fetchone()[0] == rows


def write_module(folder: Path, name: str, body: str) -> None:
    (folder / f"{name}.py").write_text(body)


@pytest.mark.parametrize(("program", "body", "said"), [
    ("nosuchmod_prog:run", None, "module nosuchmod_prog does not import (ModuleNotFoundError"),
    ("prog_noprompts:run", "def run(inputs, *, prompts, llm):\n    return 'yes'\n", "needs PROMPTS"),
    ("prog_notcallable:run", "PROMPTS = {'a': 'x'}\nrun = 3\n", "run is a int, not a function"),
    ("prog_nofn:go", "PROMPTS = {'a': 'x'}\n", "has no go"),
    ("prog_raises:run", "raise RuntimeError('broken at import')\n", "does not import (RuntimeError: broken at import)"),
    ("prog_badprompts:run", "PROMPTS = ['x']\ndef run(inputs, *, prompts, llm):\n    return 'yes'\n", "needs PROMPTS"),
    ("prog_noformat", None, "is not MODULE:FUNCTION"),
])
def test_a_bad_program_is_one_line_and_writes_nothing(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], program: str, body: str | None, said: str
) -> None:
    if body is not None:
        write_module(folder, program.partition(":")[0], body)
    db = tmp_path / "t.db"
    capsys.readouterr()
    code = main(["--db", str(db), "run", "--program", program, "--target", "pubmedqa.jsonl", "--model", "fake"])
    err = capsys.readouterr().err
    assert code != 0 and said in err, err
    assert len(err.strip().splitlines()) <= 2 and "Traceback" not in err  # the line, and its hint
    assert not db.exists()


def test_a_program_that_raises_on_some_rows_gives_failed_answers_and_the_run_goes_on(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_module(folder, "prog_flaky", (
        "PROMPTS = {'answer': 'Answer yes, no or maybe.'}\n"
        "def run(inputs, *, prompts, llm):\n"
        "    if len(inputs['context']) % 2:\n"
        "        raise ValueError('odd context\\nsecond line')\n"
        "    return llm.invoke([('system', prompts['answer']), ('human', 'Question: ' + inputs['question']"
        " + '\\nReply in exactly this format:\\nAnswer: <one of yes / no / maybe>')]).content\n"
    ))
    db = tmp_path / "t.db"
    capsys.readouterr()
    code = main(["--db", str(db), "run", "--program", "prog_flaky:run", "--target", "pubmedqa.jsonl", "--model", "fake",
                 "--steps", "1", "--candidates", "2", "--examples", "8", "--test-examples", "8"])
    err = capsys.readouterr().err
    assert code == 0, err
    run_id = run_id_of(err)
    with EventLog(str(db)) as log:
        assert log.state(run_id).status == "completed"
        answers = [a for se in log.events(run_id) if isinstance(se.event, (CandidateAnswered, TestAnswered))
                   for a in se.event.answers]
    failed = [a for a in answers if a.error is not None]
    assert failed and len(failed) < len(answers)
    assert all(a.error == "ValueError: odd context" and not a.correct and a.parsed is None and a.output is None
               for a in failed)
    assert f"program prog_flaky:run: failed on {len(failed)} answer(s)" in err
