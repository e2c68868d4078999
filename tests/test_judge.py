"""The LLM judge (issue 20): a rubric as data, candidate.judged events between the scoring and the
evaluator, judge metrics in the objective, rescoring with a new rubric (judge calls only), parse
failures recorded as such, kill -9 and resume."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from test_graph import (
    SMALL,
    cli_args,
    comparable,
    resume_killed,
    run_in_process,
    tprompt,
    wait_for_row,
)

from tprompt.config import make_config
from tprompt.errors import ConfigError
from tprompt.evaluator import ObjectiveWeights, load_task, objective
from tprompt.graph import build_graph
from tprompt.graph.rescore import rescore_run
from tprompt.graph.rules import next_node
from tprompt.judge.answers import judge_answered
from tprompt.judge.request import (
    JudgeItem,
    judge_request,
    judgement_metrics,
    parse_judgement,
)
from tprompt.judge.rubric import Criterion, Rubric
from tprompt.models import Recorder
from tprompt.models.base import ChatBackend
from tprompt.models.fake import FakeBackend
from tprompt.stores import EventLog
from tprompt.stores.events import Answered, CandidateJudged, Judged, Judgement
from tprompt.stores.projection import answer_key, fold

END, START = "__end__", "__start__"
JUDGED = dict(SMALL, judge="fake", steps=1, candidates=2)
ITEM = JudgeItem(example_id="e1", question="What is 2+2?", answer="4", reference="4")


def agents(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT agent, count(*) FROM transcripts GROUP BY agent").fetchall())


# -- the rubric and the parser ---------------------------------------------------------------------


def test_a_rubric_with_no_criteria_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match="the rubric has no criteria"):
        make_config({"judge": "fake", "rubric": {"criteria": []}})
    with pytest.raises(ConfigError, match="a rubric is given but no judge"):
        make_config({"rubric": {"criteria": [{"name": "x", "description": "y"}]}})


def test_the_judge_request_declares_its_templates_and_the_rubric() -> None:
    rubric = Rubric(name="mine", version=3)
    req = judge_request(rubric, ITEM, task_description="arithmetic", prompt="Answer.")
    assert "rubric.mine@v3" in req.templates and "judge.request@v1" in req.templates
    assert req.messages[0] == ("system", rubric.instruction) and req.temperature == 0.0
    assert "faithfulness: <score> |" in req.messages[1][1]
    # Without a reference, the criterion that needs one is not asked for.
    bare = judge_request(rubric, JudgeItem("e2", "Why?", "Because."), task_description="t", prompt="p")
    assert "faithfulness" not in bare.messages[1][1] and "relevance: <score> |" in bare.messages[1][1]


def test_the_parser_reads_lines_bold_names_fractions_and_json() -> None:
    rubric = Rubric(criteria=(Criterion(name="relevance", description="r"), Criterion(name="fluency", description="f")))
    got = parse_judgement("**Relevance**: 4/5 - on topic\n- fluency = 2 (clumsy)", rubric, ITEM, call_id="c-1")
    assert [(j.criterion, j.score, j.rationale) for j in got] == [("relevance", 4.0, "on topic"), ("fluency", 2.0, "clumsy")]
    assert all(j.call_id == "c-1" and j.error is None for j in got)
    js = parse_judgement('Sure: {"relevance": {"score": 5, "rationale": "yes"}, "fluency": 3}', rubric, ITEM)
    assert [(j.score, j.rationale) for j in js] == [(5.0, "yes"), (3.0, "")]


def test_an_unparseable_or_out_of_scale_reply_is_recorded_as_a_failure_never_a_zero() -> None:
    rubric = Rubric(criteria=(Criterion(name="relevance", description="r"), Criterion(name="fluency", description="f")))
    got = parse_judgement("relevance: 9 | great\nI cannot judge fluency.", rubric, ITEM)
    assert [j.score for j in got] == [None, None]
    assert "outside the scale 1..5" in (got[0].error or "") and "no score for fluency" in (got[1].error or "")
    judged = CandidateJudged(stage="source", step=1, prompt_id="p", task="t", judge="fake", rubric=rubric.ref, judgements=got)
    assert judged.unparsed == 2
    assert judgement_metrics(judged, rubric) == {"judge_relevance": None, "judge_fluency": None}


def test_judgement_metrics_are_mean_scores_normalized_by_the_scale() -> None:
    rubric = Rubric(criteria=(Criterion(name="relevance", description="r"),), scale=(0, 10))
    judgements = [Judgement(example_id=f"e{i}", criterion="relevance", score=s) for i, s in enumerate((10, 5, None))]
    judged = CandidateJudged(stage="source", step=1, prompt_id="p", task="t", judge="fake", rubric=rubric.ref, judgements=judgements)
    assert judgement_metrics(judged, rubric) == {"judge_relevance": 0.75}


def test_judge_metrics_take_weights_in_the_objective_and_other_names_are_refused() -> None:
    weights = ObjectiveWeights(accuracy=1, ifr=0, ece=0, auroc=0, pr_n=0, pr_p=0, judge_relevance=3)
    assert objective({"accuracy": 1.0, "judge_relevance": 0.0}, weights) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="unknown metric 'judge relevance'"):
        ObjectiveWeights(**{"judge relevance": 1})
    make_config({"judge": "fake", "weights": {"judge_fluency": 1.0}})


# -- the graph ------------------------------------------------------------------------------------


def edges(**shape: bool) -> set[tuple[str, str]]:
    return {(e.source, e.target) for e in build_graph(**shape).get_graph().edges}


def test_the_judge_sits_between_the_scoring_and_the_evaluator_in_both_graphs() -> None:
    for transfer in (True, False):
        plain, judged = edges(transfer=transfer), edges(transfer=transfer, judge=True)
        assert not any("judge" in e for e in plain)
        assert judged - plain == {("score", "judge"), ("test", "judge"), ("judge", "evaluate"), (START, "judge")}
        assert plain - judged == {("score", "evaluate"), ("test", "evaluate")}


def test_tprompt_graph_judge_draws_it(tmp_path: Path) -> None:
    mermaid = tprompt(tmp_path / "t.db", "graph", "--judge").stdout
    assert "score --> judge;" in mermaid and "judge --> evaluate;" in mermaid
    assert "judge" not in tprompt(tmp_path / "t.db", "graph").stdout


def test_a_judged_run_on_the_fake_model(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    log, run_id = run_in_process(db, **JUDGED, weights={"judge_relevance": 1.0})
    events = list(log.events(run_id))
    answered = [e for e in events if isinstance(e.event, Answered)]
    judged = {answer_key(e.event): e for e in events if isinstance(e.event, Judged)}
    assert answered and len(judged) == len(answered)
    scored = {answer_key(e.event): e for e in events if e.type in ("candidate.scored", "prompt.tested")}
    rubric = Rubric()
    for a in answered:
        j = judged[answer_key(a.event)]
        s = scored[answer_key(a.event)]
        assert a.seq < j.seq < s.seq  # the answers, the judge, the evaluator
        assert j.event.rubric == "rubric.default@v1" and j.event.judge == "fake"
        assert {x.example_id for x in j.event.judgements} == {x.example_id for x in a.event.answers}
        assert {k: s.event.metrics[k] for k in judgement_metrics(j.event, rubric)} == judgement_metrics(j.event, rubric)
    calls = agents(db)
    assert calls["judge"] == sum(len(a.event.answers) for a in answered) == calls["scorer"]
    state = log.state(run_id)
    assert state.judgements > 0 and 0 < state.judge_unparsed < state.judgements  # the fake is off-format ~1 in 12
    rows = log.transcripts.rows([(run_id, 1, None)])
    judge_row = next(r for r in rows if r.agent == "judge")
    body = json.loads(log.transcripts.body(judge_row.request_hash) or "{}")
    assert "rubric.default@v1" in body["templates"]
    assert any(agent == "judge" for agent, *_ in log.transcripts.spend([run_id]))


def test_next_node_sends_unjudged_answers_to_the_judge(tmp_path: Path) -> None:
    log, run_id = run_in_process(tmp_path / "t.db", **JUDGED)
    events = list(log.events(run_id))
    first_answer = next(e.seq for e in events if e.type == "candidate.answered")
    config = log.state(run_id).config
    assert config is not None
    answered = fold(events[:first_answer], run_id=run_id)
    assert next_node(answered, config) == "judge"
    assert next_node(answered, config.model_copy(update={"judge": None})) == "evaluate"
    assert events[first_answer].type == "candidate.judged"
    assert next_node(fold(events[: first_answer + 1], run_id=run_id), config) == "evaluate"


class _Refuses(ChatBackend):
    """A judge that never answers in the format asked for."""

    spec = "refuses"
    revision = "1"

    def generate(self, requests):  # type: ignore[no-untyped-def]
        return [("I would rather not grade this.", 5, 6) for _ in requests]


def test_a_judge_reply_that_cannot_be_parsed_is_recorded_per_answer_and_criterion(tmp_path: Path) -> None:
    log, run_id = run_in_process(tmp_path / "t.db", steps=1, candidates=1)
    answered = next(e.event for e in log.events(run_id) if isinstance(e.event, Answered))
    task = load_task(answered.task)
    with Recorder(log, run_id=run_id) as rec:
        judged = judge_answered(log, answered, rubric=Rubric(), model=_Refuses(), site=rec.at("judge", run_id=run_id),
                                task=task, examples=task.sample(SMALL["examples"], split="train", seed=0))
    assert len(judged.judgements) == 4 * len(answered.answers) == judged.unparsed
    assert all(j.score is None and j.error and j.call_id for j in judged.judgements)
    assert set(judgement_metrics(judged, Rubric()).values()) == {None}


def test_the_cli_shows_the_unparsed_count(tmp_path: Path) -> None:
    out = tprompt(tmp_path / "t.db", "run", *cli_args(steps=1, candidates=1, top_k=1), "--judge", "fake")
    line = next(x for x in out.stderr.splitlines() if x.startswith("judge fake:"))
    log = EventLog(tmp_path / "t.db")
    (run,) = log.runs()
    state = log.state(run.run_id)
    assert f"{state.judgements} judgement(s), {state.judge_unparsed} unparseable" in line and state.judge_unparsed


def test_run_with_a_rubric_file_without_criteria_writes_nothing(tmp_path: Path) -> None:
    rubric = tmp_path / "r.toml"
    rubric.write_text('name = "empty"\ncriteria = []\n')
    db = tmp_path / "t.db"
    out = tprompt(db, "run", *cli_args(), "--judge", "fake", "--rubric", str(rubric), check=False)
    assert out.returncode != 0 and "the rubric has no criteria" in out.stderr
    assert len(out.stderr.strip().splitlines()) <= 2 and not db.exists()


# -- rescoring with another rubric -------------------------------------------------------------------


def test_rescore_with_a_new_rubric_calls_only_the_judge_and_is_a_fork(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    log, run_id = run_in_process(db, **JUDGED)
    before = agents(db)
    rubric = tmp_path / "r.toml"
    rubric.write_text('name = "terse"\nscale = [0, 10]\n[[criteria]]\nname = "brevity"\ndescription = "short"\n')
    out = tprompt(db, "rescore", run_id, "--rubric", str(rubric), "--weight", "judge_brevity=1", "--json")
    new_id = json.loads(out.stdout)["run_id"]
    after = agents(db)
    assert after["scorer"] == before["scorer"] and after["proposer"] == before["proposer"]  # 0 scorer calls
    assert after["judge"] == 2 * before["judge"]
    state = log.state(new_id)
    assert state.parent_run_id == run_id and state.config is not None and state.config.judge_rubric is not None
    assert state.config.judge_rubric.ref == "rubric.terse@v1"
    judged = [e.event for e in log.events(new_id) if isinstance(e.event, Judged)]
    assert judged and {j.rubric for j in judged} == {"rubric.terse@v1"}
    assert {j.criterion for x in judged for j in x.judgements} == {"brevity"}
    assert all("judge_brevity" in s.metrics for s in state.scores)
    # The same rubric again: every judge request is a cache hit.
    again = rescore_run(log, run_id, {"judge_brevity": 1.0}, rubric=json.loads(json.dumps(state.config.judge_rubric.model_dump())))
    assert agents(db)["judge"] == 3 * before["judge"]
    assert not any(r.agent == "judge" and not r.cache_hit for r in log.transcripts.rows([(again, 1, None)]))
    assert comparable(log, again)[2:] == comparable(log, new_id)[2:]


def test_rescore_adds_a_judge_to_a_run_that_had_none(tmp_path: Path) -> None:
    log, run_id = run_in_process(tmp_path / "t.db", steps=1, candidates=1)
    new_id = rescore_run(log, run_id, {"judge_relevance": 1.0}, judge="fake")
    events = list(log.events(new_id))
    answered = [e for e in events if isinstance(e.event, Answered)]
    judged = [e for e in events if isinstance(e.event, Judged)]
    assert len(judged) == len(answered) and all(j.seq == a.seq + 1 for a, j in zip(answered, judged))
    assert log.state(new_id).status == "completed"


# -- kill -9 and resume ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kill_at", ["first judge call", "second judgement"])
def test_sigkill_in_a_judged_run_then_resume_equals_uninterrupted(tmp_path: Path, kill_at: str) -> None:
    judge = "fake:delay=0.01"
    ref_log, ref = run_in_process(tmp_path / "ref.db", **{**JUDGED, "judge": judge})
    db = tmp_path / "crash.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tprompt.cli", "run", "--json", *cli_args(**JUDGED), "--judge", judge],
        env={**os.environ, "TPROMPT_DB": str(db)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        if kill_at == "first judge call":
            wait_for_row(db, "SELECT 1 FROM transcripts WHERE agent = 'judge'", proc)
        else:
            wait_for_row(db, "SELECT 1 FROM events WHERE type = 'candidate.judged' LIMIT 1 OFFSET 1", proc)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    log, run_id = resume_killed(db)
    assert comparable(log, run_id) == comparable(ref_log, ref)
    with sqlite3.connect(db) as conn:
        twice = conn.execute("SELECT count(*) FROM (SELECT cache_key FROM transcripts WHERE cache_hit = 0 AND error IS"
                             " NULL GROUP BY cache_key HAVING count(*) > 1)").fetchone()[0]
    assert twice == 0


# -- the embedded model -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_smollm2_as_judge_stops_the_run_after_its_first_batch(tmp_path: Path) -> None:
    # smollm2 repeats the answer instead of scoring it (every judgement unparseable): was a whole run of judge
    # calls paid for judgements in no metric; now the first batch (2 answers here) and one clear error.
    from tprompt.errors import JudgeUnparseable

    db = tmp_path / "t.db"
    with pytest.raises(JudgeUnparseable, match="judge smollm2: none of its first 2 replies gave a score"):
        run_in_process(db, proposer="fake", scorer="fake", judge="smollm2", steps=1, candidates=1, top_k=1,
                       examples=2, test_examples=2)
    assert agents(db)["judge"] == 2
    with EventLog(db, readonly=True) as log:
        (run_id,) = [r.run_id for r in log.runs()]
        assert log.state(run_id).status == "failed"
        assert not [e for e in log.events(run_id) if isinstance(e.event, Judged)]


def test_the_fake_judge_answers_in_the_asked_format() -> None:
    req = judge_request(Rubric(), ITEM, task_description="t", prompt="p")
    (text, _, _), = FakeBackend("fake").generate([req])
    parsed = parse_judgement(text, Rubric(), ITEM)
    assert len(parsed) == 4 and len(text.splitlines()) == 4


def test_rescore_with_a_rubric_without_criteria_writes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    log, run_id = run_in_process(db, **JUDGED)
    runs, calls = len(log.runs()), agents(db)
    rubric = tmp_path / "r.json"
    rubric.write_text('{"name": "empty", "criteria": []}')
    out = tprompt(db, "rescore", run_id, "--rubric", str(rubric), check=False)
    assert out.returncode != 0 and "the rubric has no criteria" in out.stderr
    assert len(log.runs()) == runs and agents(db) == calls


def test_an_open_ended_rows_references_are_the_judges_reference() -> None:
    # was: "" for every open-ended row (only the gold answer was read), so faithfulness was never asked
    from tprompt.evaluator.task_model import Example
    from tprompt.judge.answers import reference_of

    one = Example(id="x-1", question="Q?", references=("The conclusion.",))
    two = Example(id="x-2", question="Q?", references=("First.", "Second."))
    assert reference_of(one) == "The conclusion."
    assert reference_of(two) == "- First.\n- Second."
    assert reference_of(Example(id="x-3", question="Q?", answer="42")) == "42"
    assert reference_of(Example(id="x-4", question="Q?", references=())) == ""


@pytest.mark.parametrize(("name", "text", "needle"), [
    ("r.toml", 'name = "nocrit"\nscale = [1, 5]\n', "has no criteria"),       # was: the default rubric, silently
    ("r.toml", "", "has no criteria"),                                          # was: the default rubric, silently
    ("r.txt", '[[criteria]]\nname = "a"\ndescription = "b"\n', ".toml, .json or .yaml"),  # was: read as TOML
    ("r.yaml", "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi")) + "criteria: [{name: x, description: d, extra: *i}]\n",
     "expands to more than"),                                                   # was: hung while validated
    ("r.toml", "".join(f'[[criteria]]\nname = "c{i}"\ndescription = "d"\n' for i in range(51)),
     "at most 50"),                                                             # was: 51 judge calls per answer
])
def test_a_bad_rubric_file_is_one_line_naming_it(tmp_path: Path, name: str, text: str, needle: str) -> None:
    rubric = tmp_path / name
    rubric.write_text(text)
    db = tmp_path / "t.db"
    out = tprompt(db, "run", *cli_args(), "--judge", "fake", "--rubric", str(rubric), check=False)
    lines = out.stderr.strip().splitlines()
    assert out.returncode != 0 and needle in lines[0] and str(rubric) in lines[0], out.stderr
    assert len(lines) <= 2 and "Traceback" not in out.stderr and not db.exists()


def test_a_judge_whose_first_batch_parses_nothing_stops_the_run_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tprompt.cli import main
    from tprompt.judge.answers import PROBE_BATCH

    db = tmp_path / "t.db"
    capsys.readouterr()
    code = main(["--db", str(db), "run", "--target", "arc_challenge", "--model", "fake", "--judge", "fake:garble=1",
                 "--steps", "1", "--candidates", "1", "--examples", "12", "--test-examples", "2"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code != 0 and len(errors) == 1 and "Traceback" not in err, err
    assert f"judge fake:garble=1: none of its first {PROBE_BATCH} replies gave a score" in errors[0]
    with sqlite3.connect(db) as conn:
        paid = dict(conn.execute("SELECT agent, count(*) FROM transcripts GROUP BY agent").fetchall())
    # was: every one of the 12 answers judged (and later sets too) before anything said so
    assert paid == {"scorer": 12, "judge": PROBE_BATCH}
    with EventLog(db, readonly=True) as log:
        (run_id,) = [r.run_id for r in log.runs()]
        assert log.state(run_id).status == "failed"
    # The hint works as printed, with another judge in place of SPEC.
    hint = errors[0].split("continue with another judge: ")[1].rstrip(")")
    assert hint.startswith(f"tprompt --db {db} fork {run_id} --at ")
    capsys.readouterr()
    assert main(hint.replace("SPEC", "fake").split()[1:]) == 0, capsys.readouterr().err
    with EventLog(db, readonly=True) as log:
        forked = [r.run_id for r in log.runs() if r.run_id != run_id]
        state = log.state(forked[0])
    assert state.status == "completed" and state.judgements > 0 and state.config.judge == "fake"


def test_a_rescore_judge_whose_first_batch_parses_nothing_stops_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The run's rule (judge_answered's probe) in rescore --judge: was every recorded answer set judged first."""
    from tprompt.cli import main
    from tprompt.judge.answers import PROBE_BATCH

    db = tmp_path / "t.db"
    assert main(["--db", str(db), "run", "--target", "arc_challenge", "--model", "fake", "--steps", "1",
                 "--candidates", "2", "--examples", "12", "--test-examples", "4"]) == 0, capsys.readouterr().err
    with EventLog(db, readonly=True) as log:
        (run_id,) = [r.run_id for r in log.runs()]
        n_events = len(list(log.events(run_id)))
    capsys.readouterr()
    code = main(["--db", str(db), "rescore", run_id, "--judge", "fake:garble=1"])
    captured = capsys.readouterr()
    assert code != 0 and captured.out == "" and len(captured.err.strip().splitlines()) == 1, captured.err
    assert f"judge fake:garble=1: none of its first {PROBE_BATCH} replies gave a score" in captured.err
    assert "tprompt stopped before judging more" in captured.err
    assert f"no run was written; rescore with another judge: tprompt --db {db} rescore {run_id} --judge SPEC" in captured.err
    with EventLog(db, readonly=True) as log:
        assert [r.run_id for r in log.runs()] == [run_id] and len(list(log.events(run_id))) == n_events
    with sqlite3.connect(db) as conn:
        judged = conn.execute("SELECT count(*) FROM transcripts WHERE agent = 'judge'").fetchone()[0]
    assert judged == PROBE_BATCH  # not 2 x 12 + 4
    capsys.readouterr()
    assert main(["--db", str(db), "rescore", run_id, "--judge", "fake"]) == 0, capsys.readouterr().err
