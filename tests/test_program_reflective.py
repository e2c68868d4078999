"""The reflective proposer with a program (issue 31): each step rewrites the prompt its parent's failures point
to, recorded with why; the request shows that prompt and the failures; kill -9 and resume give the same events."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tprompt.cli import main
from tprompt.graph.program_steps import answer_prompts, pointed_prompt
from tprompt.stores import EventLog
from tprompt.stores.events import CandidateAnswered, StepProposed

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "program"
#: Half the rows answer from the draft alone: their failures point to `draft` only.
DRAFT = '''"""Draft, then (on some rows) check the draft."""
PROMPTS = {"draft": "Draft a yes, no or maybe answer to the research question.", "check": "Check the draft answer."}


def run(inputs, *, prompts, llm):
    draft = llm.invoke([("system", prompts["draft"]), ("human", inputs["question"])]).content
    if len(inputs["question"]) % 2:
        return draft
    return llm.invoke([("system", prompts["check"]), ("human", inputs["question"] + "\\nDraft: " + draft)]).content
'''
RUN = ["run", "--target", "pubmedqa.jsonl", "--model", "fake", "--steps", "3", "--candidates", "2", "--examples", "6",
       "--test-examples", "4", "--proposer-style", "reflective"]


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    where = tmp_path / "example"
    shutil.copytree(EXAMPLE, where, ignore=shutil.ignore_patterns("__pycache__"))
    (where / "drafting.py").write_text(DRAFT, encoding="utf-8")
    monkeypatch.chdir(where)
    return where


def test_the_pointed_prompt_is_the_one_in_the_most_failures_round_robin_among_ties() -> None:
    names = ["a", "b", "c"]
    assert pointed_prompt(names, [["a", "b"], ["b"], ["b", "c"]], step=1) == (
        "b", "in the calls of the most of the parent's 3 failed answers (a 1, b 3, c 1)")
    tied = [["a", "b", "c"], ["a", "b", "c"]]
    assert [pointed_prompt(names, tied, step=s)[0] for s in (1, 2, 3, 4)] == ["a", "b", "c", "a"]
    assert pointed_prompt(names, [["a", "c"]], step=2)[0] == "c"  # the first tied one from the step's turn on
    assert pointed_prompt(names, [], step=2) == ("b", "round-robin: none of the parent's 0 failed answers carried "
                                                 "a prompt (a 0, b 0, c 0)")


def _request_text(log: EventLog, call_id: str) -> str:
    row = log.transcripts.call(call_id)
    assert row is not None
    body = json.loads(log.transcripts.body(row.request_hash) or "{}")
    return "\n".join(str(m[1] if isinstance(m, list) else m.get("content", "")) for m in body["messages"])


@pytest.mark.parametrize("program", ["drafting:run", "pubmed:run"])
def test_a_reflective_step_rewrites_the_prompt_its_parents_failures_point_to(
        folder: Path, capsys: pytest.CaptureFixture[str], program: str) -> None:
    db = folder / "t.db"
    assert main(["--db", str(db), *RUN, "--program", program]) == 0, capsys.readouterr().err
    with EventLog(db) as log:
        (run,) = log.runs()
        events = list(log.events(run.run_id))
        original = next(se.event for se in events if isinstance(se.event, StepProposed))
        names = list(original.candidates[0].prompts or {})
        steps = [se for se in events if isinstance(se.event, StepProposed) and se.event.step > 0]
        assert len(steps) == 3
        reasons = []
        for se in steps:
            ev = se.event
            assert isinstance(ev, StepProposed) and ev.parent_id is not None and ev.candidates
            before = [x.event for x in events if x.seq < se.seq]
            answered = {(a_ev.task, a.example_id): a for a_ev in before if isinstance(a_ev, CandidateAnswered)
                        and a_ev.prompt_id == ev.parent_id for a in a_ev.answers}
            carried = answer_prompts(before, ev.stage, ev.parent_id)
            wrong = [carried[key] for key, a in answered.items() if not a.correct]
            # A failure is an answer whose per-example score is below 1 (a wrong one, or a right one scored
            # down): the reason tallies them by prompt, and the prompt chosen is the one the rule picks.
            why = ev.changed_because or ""
            tally = dict(item.rsplit(" ", 1) for item in why.rpartition("(")[2].rstrip(")").split(", "))
            failures = int(why.split("parent's ")[1].split(" ")[0])
            assert failures >= len(wrong) and list(tally) == names
            name = ev.candidates[0].changed
            assert name == pointed_prompt(names, [[n] for n in names for _ in range(int(tally[n]))], ev.step)[0]
            reasons.append(why)
            parent = next(c.prompts for x in before if isinstance(x, StepProposed) for c in x.candidates
                          if c.prompt_id == ev.parent_id)
            assert parent is not None
            for c in ev.candidates:  # the pointed prompt rewritten, the parent's others kept
                assert c.changed == name and c.prompts is not None
                assert all(c.prompts[n] == parent[n] for n in names if n != name)
            text = _request_text(log, ev.call_ids[0])
            assert f"<INS>{parent[name]}</INS>" in text and f'prompt named "{name}"' in text
            assert "(failed)" in text or not failures
    if program == "drafting:run":  # rows answered from the draft alone: the failures point to draft, not a tie
        assert any(r.startswith("in the calls of the most") for r in reasons), reasons
    else:  # a pipeline: every failure carries both prompts, so the steps go round
        assert all(r.startswith("round-robin") for r in reasons), reasons


def test_kill_9_of_a_reflective_program_run_resumes_to_the_same_events(folder: Path) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "kill_resume.py"), "--program", "drafting:run",
                           "--cwd", str(folder), "--target", "pubmedqa.jsonl", "--model", "fake:delay=0.005",
                           "--steps", "2", "--points", "3", "--proposer-style", "reflective"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "all identical" in done.stdout, done.stdout + done.stderr
    assert "calls paid twice: 0" in done.stdout and "calls paid twice: 1" not in done.stdout
