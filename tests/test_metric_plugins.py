"""Issue 20, "your task, your metric": open-ended tasks, metric plug-ins, rescore with new metrics."""

from __future__ import annotations

import json
import math
import sqlite3
import sys
from pathlib import Path

import pytest
from test_cli_mistakes import one_line
from test_graph import tprompt

from tprompt.errors import BadTaskFile, ConfigError
from tprompt.evaluator import ObjectiveWeights, load_task, metric_worker
from tprompt.evaluator import open_metrics as om
from tprompt.evaluator.registry import resolve_metric, resolve_metrics
from tprompt.evaluator.task_model import Example
from tprompt.stores.events import Answer

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SMALL = ["--steps", "1", "--candidates", "2", "--top-k", "1", "--examples", "4", "--test-examples", "4"]
OPEN = ["--source", "pubmedqa_long", "--target", "pubmedqa_long", *SMALL]


@pytest.fixture(autouse=True)
def _fresh_metric_worker() -> object:
    # User metrics are imported in a worker process that outlives a test: a test rewriting badmetrics.py needs a new one.
    metric_worker.reset()
    yield
    metric_worker.reset()


def ex(**kw: object) -> Example:
    return Example(id="x", question="q", **kw)  # type: ignore[arg-type]


# -- the built-in open-ended metrics -------------------------------------------------------------


def test_open_metrics_values() -> None:
    e = ex(references=("The cat sat on the mat.", "a dog"))
    assert om.exact_match(e, "the cat sat on the mat") == 1.0 and om.exact_match(e, "the cat") == 0.0
    assert om.token_f1(e, "the cat sat") == (pytest.approx(2 * 1 * 0.5 / 1.5), "the reference: The cat sat on the mat.")
    assert om.contains(e, "I saw a dog today") == 1.0 and om.contains(e, "a doge") == 0.0
    assert om.rouge_l(e, "The cat sat on the mat.") == pytest.approx(1.0)
    value, note = om.rouge_l(e, "the cat was sitting")  # type: ignore[misc]
    assert 0.0 < value < 1.0 and note == "the reference: The cat sat on the mat."
    assert om.exact_match(ex(), "x") is None and om.rouge_l(ex(), "x") is None  # nothing to compare with
    assert om.regex_match(ex(pattern=r"\d{4}"), "in 2024") == 1.0 and om.regex_match(ex(pattern="z"), "a") == 0.0
    assert om.json_valid(ex(), '{"a": 1}') == 1.0 and om.json_valid(ex(), "```json\n[1]\n```") == 1.0
    assert om.json_valid(ex(), "{a: 1}") == 0.0
    schema = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
    assert om.json_schema_valid(ex(json_schema=schema), '{"name": "x"}') == 1.0
    assert om.json_schema_valid(ex(json_schema=schema), '{"name": 3}') == (0.0, "3 is not of type 'string'")
    assert om.json_schema_valid(ex(json_schema=schema), '{"age": 3}') == (0.0, "missing fields: name")
    assert om.json_schema_valid(ex(json_schema=schema), "not json") == (0.0, "the reply is not JSON")


def test_a_metric_returns_feedback_as_a_pair_or_an_object_and_it_is_recorded_per_example() -> None:
    from tprompt.evaluator.registry import MetricSet, Scored, register_metric, split_feedback
    from tprompt.metric_specs import MetricSpec

    class Verdict:
        def __init__(self, score: float, feedback: str) -> None:
            self.score, self.feedback = score, feedback

    assert split_feedback((0.5, "half")) == (0.5, "half") and split_feedback(Scored(1.0, "ok")) == (1.0, "ok")
    assert split_feedback(Verdict(0.0, "no")) == (0.0, "no") and split_feedback(0.25) == (0.25, None)
    m = register_metric(MetricSpec("fb_probe", "probe"),
                        lambda e, a: Verdict(0.0, "too short " * 100) if a == "x" else (1.0, ""))
    task = load_task("pubmedqa_long")
    rows = task.train[:2]
    answers = [Answer(example_id=r.id, parsed=p, confidence=1.0, followed_format=True, correct=False)
               for r, p in zip(rows, ["x", "long enough"])]
    done = MetricSet((m,)).compute_all(answers, task)
    assert done.values["fb_probe"] == 0.5
    assert done.example_values["fb_probe"] == {rows[0].id: 0.0, rows[1].id: 1.0}
    assert list(done.feedback["fb_probe"]) == [rows[0].id]  # an empty text is no feedback
    assert done.feedback["fb_probe"][rows[0].id].startswith("too short") and len(done.feedback["fb_probe"][rows[0].id]) == 400


def test_closed_task_answers_get_wrong_vs_gold_feedback() -> None:
    from tprompt.evaluator.registry import MetricSet

    task = load_task("ai2_science")
    rows = task.train[:3]
    wrong = next(c for c in "ABCD" if c != rows[0].answer)
    answers = [Answer(example_id=rows[0].id, parsed=wrong, confidence=1.0, followed_format=True, correct=False),
               Answer(example_id=rows[1].id, parsed=None, confidence=0.0, followed_format=False, correct=False),
               Answer(example_id=rows[2].id, parsed=rows[2].answer, confidence=1.0, followed_format=True, correct=True)]
    notes = MetricSet().compute_all(answers, task).feedback["accuracy"]
    assert notes[rows[0].id].startswith(f"answered {wrong}, the gold answer is {rows[0].answer}")
    assert notes[rows[1].id].startswith("no answer in the required format; the gold answer is")
    assert rows[2].id not in notes


def test_weights_over_any_registered_metric_and_the_old_seven() -> None:
    assert ObjectiveWeights(accuracy=1, ifr=0).accuracy == 1  # the old fields keep working
    assert ObjectiveWeights(rouge_l=2).model_dump()["rouge_l"] == 2
    with pytest.raises(ValueError, match="unknown metric 'rouge'.*did you mean 'rouge_l'"):
        ObjectiveWeights(rouge=1)
    with pytest.raises(ValueError, match="must be a number >= 0"):
        ObjectiveWeights(rouge_l=-1)


# -- the bundled open-ended task -----------------------------------------------------------------


def test_pubmedqa_long_is_bundled_with_its_source_and_license() -> None:
    task = load_task("pubmedqa_long")
    assert task.kind == "text" and len(task.train) == 100 and len(task.test) == 100 and task.license == "MIT"
    assert all(r.references and r.answer == "" and r.choices is None for r in task.train + task.test)
    folder = Path(load_task.__code__.co_filename).parent / "data" / "pubmedqa_long"
    assert "long_answer" in (folder / "README.md").read_text() and (folder / "LICENSE.upstream").exists()


def test_open_task_run_on_fake_shows_the_metric_columns(tmp_path: Path) -> None:
    proc = tprompt(tmp_path / "t.db", "run", "--model", "fake", *OPEN, "--metric", "rouge_l", "--metric", "token_f1")
    header = next(line for line in proc.stdout.splitlines() if "objective" in line)
    assert header.split() == ["prompt", "token_f1", "rouge_l", "objective"]  # registry order
    row = next(line for line in proc.stdout.splitlines() if line.strip().startswith("best target")).split()
    assert 0 < float(row[2]) < 1 and 0 < float(row[3]) < 1


@pytest.mark.slow
def test_open_task_run_on_smollm2(tmp_path: Path) -> None:
    # One stage and one candidate: what the real model adds over the fake one is its free-text answers scored by
    # the metric; the stages and the transfer are the same code on either model.
    proc = tprompt(tmp_path / "t.db", "run", "--model", "smollm2", "--target", "pubmedqa_long", "--steps", "1",
                   "--candidates", "1", "--examples", "2", "--test-examples", "2", "--metric", "rouge_l")
    header = next(line for line in proc.stdout.splitlines() if "objective" in line)
    assert header.split() == ["prompt", "rouge_l", "objective"]
    row = next(line for line in proc.stdout.splitlines() if line.strip().startswith("best target")).split()
    assert 0 <= float(row[2]) <= 1


# -- rescore adds a metric with zero model calls -------------------------------------------------


def _metrics(data: dict, role: str = "best_target") -> dict[str, float]:
    row = next(r for r in data["table"] if r["role"] == role)
    return {k: v for k, v in row.items() if k not in ("role", "prompt_id", "prompt", "task", "n_examples", "objective")}


def _calls(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM transcripts").fetchone()[0]


def test_rescore_adds_a_metric_with_zero_model_calls(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    first = json.loads(tprompt(db, "run", "--json", "--model", "fake", *OPEN, "--metric", "rouge_l").stdout)
    before = _calls(db)
    proc = tprompt(db, "rescore", first["run_id"], "--metric", "exact_match", "--metric", "token_f1",
                   "--weight", "rouge_l=0", "--json")
    assert _calls(db) == before  # not one model call, cached or not
    data = json.loads(proc.stdout)
    tested = _metrics(data)
    assert set(tested) == {"rouge_l", "exact_match", "token_f1"}
    assert set(_metrics(first)) == {"rouge_l"}
    assert tested["rouge_l"] == _metrics(first)["rouge_l"]
    # Feedback is recorded with the values, and the rescored run has it too, at 0 calls (test split included).
    from tprompt.stores import EventLog
    from tprompt.stores.events import CandidateScored, PromptTested

    with EventLog(db) as log:
        runs = [r.run_id for r in log.runs()]
        assert len(runs) == 2
        scored = {rid: [se.event for se in log.events(rid) if se.run_id == rid
                        and isinstance(se.event, (CandidateScored, PromptTested))] for rid in runs}
    old, new = scored[first["run_id"]], next(v for k, v in scored.items() if k != first["run_id"])
    assert any(ev.feedback.get("rouge_l") for ev in old if isinstance(ev, PromptTested))
    assert any(ev.feedback.get("token_f1") for ev in new if isinstance(ev, PromptTested))
    assert any(ev.feedback.get("token_f1") for ev in new if isinstance(ev, CandidateScored))
    rouge = {ev.prompt_id: ev.feedback.get("rouge_l") for ev in old if isinstance(ev, PromptTested)}
    assert {ev.prompt_id: ev.feedback.get("rouge_l") for ev in new if isinstance(ev, PromptTested)} == rouge


# -- a user's own metric: the example module ------------------------------------------------------


def test_the_example_metric_module_runs_resumes_and_is_recorded(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    proc = tprompt(db, "run", "--json", "--model", "fake", *OPEN, "--metric", "my_metrics:brevity",
                   "--metric", "my_metrics:overlap", "--metric", "rouge_l", cwd=EXAMPLES)
    data = json.loads(proc.stdout)
    metrics = _metrics(data)
    assert set(metrics) == {"brevity", "overlap", "rouge_l"} and all(0 <= v <= 1 for v in metrics.values())
    show = json.loads(tprompt(db, "show", data["run_id"], "--json", cwd=EXAMPLES).stdout)
    assert show["config"]["metric_versions"] == {"my_metrics:brevity": "1", "my_metrics:overlap": "1", "rouge_l": "1"}


# -- bad input: one line, non-zero exit, nothing written -------------------------------------------


def _bad_module(tmp_path: Path, body: str) -> Path:
    (tmp_path / "badmetrics.py").write_text("from tprompt import metric\n" + body)
    return tmp_path


@pytest.mark.parametrize("ref, body, words", [
    ("nosuchmodule_x:f", "", "cannot import nosuchmodule_x"),
    ("badmetrics:nothere", "", "has no 'nothere'"),
    ("badmetrics:f", "def f(answer):\n    return 1.0\n", "must take two arguments"),
    ("badmetrics:f", "raise RuntimeError('boom')\n", "cannot import badmetrics (RuntimeError: boom)"),
    ("no_such_builtin", "", "unknown metric name"),
])
def test_bad_metric_refs_fail_before_anything_is_written(tmp_path: Path, ref: str, body: str, words: str) -> None:
    folder = _bad_module(tmp_path, body)
    db = tmp_path / "t.db"
    line = one_line(tprompt(db, "run", "--model", "fake", *OPEN, "--metric", ref, check=False, cwd=folder))
    assert words in line and f"metric {ref}" in line
    assert not db.exists()


def test_weights_naming_an_unknown_metric(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    line = one_line(tprompt(db, "run", "--model", "fake", *OPEN, "--weight", "tone=1", check=False))
    assert "weights" in line and "unknown metric 'tone'" in line
    assert not db.exists()


def test_an_open_row_without_answer_or_reference(tmp_path: Path) -> None:
    path = tmp_path / "open.jsonl"
    path.write_text(json.dumps({"question": "Summarize: a b c", "reference": "a b"}) + "\n"
                    + json.dumps({"question": "Reply kindly"}) + "\n")
    with pytest.raises(BadTaskFile, match=r"open\.jsonl:2: missing or empty 'answer'"):
        load_task(str(path))
    # A row only a judge could score says so ("reference": null); with no judge configured the run refuses it.
    path.write_text("".join(json.dumps({"question": f"Reply kindly {i}", "reference": None if i == 2 else "ok"}) + "\n"
                            for i in range(6)))
    assert load_task(str(path)).kind == "text"
    db = tmp_path / "t.db"
    line = one_line(tprompt(db, "run", "--model", "fake", "--source", str(path), "--target", str(path), *SMALL,
                            check=False))
    assert "neither 'answer' nor 'reference'" in line and "no judge" in line and str(path) in line
    assert not db.exists()


RAISES_ON_ONE = '''
@metric(name="picky")
def picky(example, answer):
    if example.id == BAD:
        raise ValueError("cannot score this one")
    return 0.5

@metric(name="nanny")
def nanny(example, answer):
    return float("nan") if example.id == BAD else 1.0

@metric(name="big", range=(0.0, 1.0))
def big(example, answer):
    return 7.0 if example.id == BAD else 0.25
'''


def test_a_metric_that_fails_on_one_example_is_undefined_there_and_counted(tmp_path: Path) -> None:
    task = load_task("pubmedqa_long")
    bad = task.test[0].id
    folder = _bad_module(tmp_path, f"BAD = {bad!r}\n" + RAISES_ON_ONE)
    sys.modules.pop("badmetrics", None)
    sys.path.insert(0, str(folder))
    try:
        ms = resolve_metrics(["badmetrics:picky", "badmetrics:nanny", "badmetrics:big"])
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("badmetrics", None)
    answers = [Answer(example_id=e.id, parsed="x", confidence=0.5, followed_format=True, correct=False)
               for e in task.test[:4]]
    values, undefined = ms.compute(answers, task)
    assert values["picky"] == 0.5 and values["nanny"] == 1.0 and values["big"] == 0.25
    assert undefined == {"picky": 1, "nanny": 1, "big": 1}
    assert not any(isinstance(v, float) and math.isnan(v) for v in values.values())


def test_a_metric_that_raises_in_a_run_is_counted_in_the_table(tmp_path: Path) -> None:
    task = load_task("pubmedqa_long")
    # The test rows the run samples are not known up front: fail on every row whose id ends in an even digit.
    body = ("@metric(name='picky')\ndef picky(example, answer):\n"
            "    if int(example.id[-1]) % 2 == 0:\n        raise ValueError('no')\n    return 0.5\n")
    folder = _bad_module(tmp_path, body)
    proc = tprompt(tmp_path / "t.db", "run", "--model", "fake", *OPEN, "--metric", "badmetrics:picky", cwd=folder)
    assert "undefined (the metric raised or returned a bad value): picky on" in " ".join(proc.stdout.split())
    assert task  # the run went on to its final table


def test_resuming_under_another_metric_version_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    folder = _bad_module(tmp_path, "@metric(name='tone', version='1')\ndef tone(example, answer):\n    return 0.5\n")
    first = json.loads(tprompt(db, "run", "--json", "--model", "fake", *OPEN, "--metric", "badmetrics:tone",
                               "--review", cwd=folder).stdout)  # it pauses for review: a run to resume
    with sqlite3.connect(db) as conn:
        n_events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    tprompt(db, "review", first["run_id"], "--accept", cwd=folder)
    with sqlite3.connect(db) as conn:
        n_events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    _bad_module(tmp_path, "@metric(name='tone', version='2')\ndef tone(example, answer):\n    return 0.5\n")
    line = one_line(tprompt(db, "resume", first["run_id"], check=False, cwd=folder))
    # The run recorded the module's file and hash (portable runs): the changed file is refused before its
    # declared version is even imported, in one line that names the module and the way to rescore under it.
    assert "metric module badmetrics" in line and "changed since the run recorded it" in line
    assert "rescore" in line and "--accept-changed" in line
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == n_events


def test_a_name_held_by_a_builtin_cannot_be_taken(tmp_path: Path) -> None:
    folder = _bad_module(tmp_path, "@metric(name='rouge_l')\ndef mine(example, answer):\n    return 0.5\n")
    sys.modules.pop("badmetrics", None)
    sys.path.insert(0, str(folder))
    try:
        with pytest.raises(ConfigError, match="already registered"):
            resolve_metric("badmetrics:mine")
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("badmetrics", None)


# -- one registry: lookups without side effects, weights against the run's own metrics ---------------------------


def test_asking_whether_a_judge_metric_is_known_registers_nothing() -> None:
    from tprompt import metric_specs

    before = metric_specs.registered_names()
    assert metric_specs.is_registered("judge_never_seen_before") and not metric_specs.is_registered("judge_")
    assert metric_specs.metric_spec("judge_never_seen_before").label == "judge never_seen_before"
    assert metric_specs.registered_names() == before  # b94469e registered it as a side effect of asking


def test_a_runs_weights_are_checked_against_its_own_metrics_not_the_process() -> None:
    from tprompt.evaluator.registry import MetricSet, run_objective_weights
    from tprompt.judge.rubric import Rubric

    # This process knows exact_match; a run that does not compute it may not weight it (rouge_l and token_f1,
    # what an open task computes when it names nothing, every run may).
    resolve_metrics(["exact_match"])
    with pytest.raises(ConfigError, match="weights: weight of unknown metric 'exact_match'"):
        run_objective_weights({"exact_match": 1}, MetricSet())
    assert run_objective_weights({"exact_match": 1}, resolve_metrics(["exact_match"])).model_dump()["exact_match"] == 1
    with pytest.raises(ConfigError, match="unknown metric 'judge_nosuch'"):
        run_objective_weights({"judge_nosuch": 1}, MetricSet(), Rubric())  # not a criterion of the run's rubric
    with pytest.raises(ConfigError, match="unknown metric 'judge_relevance'"):
        run_objective_weights({"judge_relevance": 1}, MetricSet())  # a run without a judge
    assert run_objective_weights({"judge_relevance": 2}, MetricSet(), Rubric()).model_dump()["judge_relevance"] == 2
    zero = dict.fromkeys(("accuracy", "ifr", "ece", "auroc", "pr_n", "pr_p", "brier"), 0)
    with pytest.raises(ConfigError, match="weights: at least one objective weight must be positive"):
        run_objective_weights(zero, MetricSet(), open_tasks=False)
    # An open task computes rouge_l and token_f1 when its run names no metric: they carry the objective there.
    assert run_objective_weights(zero, MetricSet()).model_dump()["rouge_l"] == 1


@pytest.mark.parametrize("weight, words", [
    ("judge_nosuch=1", "unknown metric 'judge_nosuch'"),
    ("accuracy=0", "at least one objective weight must be positive"),
])
def test_run_refuses_a_judge_criterion_it_lacks_and_all_zero_weights(tmp_path: Path, weight: str, words: str) -> None:
    db = tmp_path / "t.db"
    zero = [a for m in ("ifr", "ece", "auroc", "pr_n", "pr_p", "brier") for a in ("--weight", f"{m}=0")]
    line = one_line(tprompt(db, "run", "--model", "fake", "--judge", "fake", "--target", "arc_challenge", *SMALL,
                            *zero, "--weight", weight, check=False))
    assert "weights" in line and words in line
    assert not db.exists()


def test_a_user_metric_cannot_take_a_built_in_name(tmp_path: Path) -> None:
    folder = _bad_module(tmp_path, "from tprompt import metric\n\n@metric(name='accuracy')\n"
                                   "def f(example, answer):\n    return 1.0\n")
    db = tmp_path / "t.db"
    line = one_line(tprompt(db, "run", "--model", "fake", *OPEN, "--metric", "badmetrics:f", check=False, cwd=folder))
    assert "metric badmetrics:f: its name 'accuracy' is already registered for a built-in metric" in line and "@metric(name=" in line
    assert not db.exists()


def _module_in(folder: Path, module: str, source: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{module}.py").write_text("from tprompt import metric\n" + source)


def test_two_modules_may_name_a_metric_alike_in_one_process_but_not_in_one_run(tmp_path: Path) -> None:
    """A long-lived caller runs examples/dates' iso_date, then a module of its own with another iso_date (CI on b1c1fa2:
    "a different metric 'iso_date' is already registered" once a test had resolved the other first)."""
    _module_in(tmp_path, "isoa", "@metric(name='iso_date', gloss='one')\ndef f(example, answer):\n    return 1.0\n")
    _module_in(tmp_path, "isob", "def iso_date(example, answer):\n    return 0.0\n")
    sys.path.insert(0, str(tmp_path))
    try:
        assert resolve_metrics(["isoa:f"]).metrics[0].spec.gloss == "one"
        assert resolve_metrics(["isob:iso_date"]).metrics[0].spec.gloss == ""
        with pytest.raises(ConfigError, match="is also the name of metric isoa:f in this run"):
            resolve_metrics(["isoa:f", "isob:iso_date"])
        with pytest.raises(ConfigError, match="already registered for a built-in metric"):
            _module_in(tmp_path, "isoc", "def rouge_l(example, answer):\n    return 0.0\n")
            resolve_metric("isoc:rouge_l")
    finally:
        sys.path.remove(str(tmp_path))


def test_a_metric_is_called_where_it_was_imported_after_the_caller_restored_its_import_path(tmp_path: Path) -> None:
    """CI on b1c1fa2: a worker restarted whenever sys.path changed, so a metric imported from a folder since removed
    from sys.path gave no value (None) on every call."""
    _module_in(tmp_path, "wherefrom", "def w(example, answer):\n    return 0.75\n")
    sys.path.insert(0, str(tmp_path))
    try:
        ms = resolve_metrics(["wherefrom:w"])
    finally:
        sys.path.remove(str(tmp_path))
    task = load_task("pubmedqa_long")
    answers = [Answer(example_id=e.id, parsed="x", confidence=0.5, followed_format=True, correct=False)
               for e in task.test[:2]]
    assert ms.compute(answers, task)[0]["w"] == 0.75
