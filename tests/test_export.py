"""Results leave tprompt (issue 20): `tprompt export` in each format, the Python API's best prompt and
provenance, and a new run started from an exported prompt."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from conftest import run_created

import tprompt as tp
from tprompt.errors import UsageError
from tprompt.evaluator import load_task
from tprompt.evaluator.template import row_values
from tprompt.export import EXPORT_FORMAT, PromptExport, export_prompt, public_url, read_prompt_file
from tprompt.graph.config import load_config_file
from tprompt.stores import CandidateScored, EventLog, StageStarted
from tprompt.stores.events import PromptTested


def _hand_made(db: Path, *scores: CandidateScored, **config: object) -> str:
    with EventLog(db) as log:
        run = log.create_run(run_created("hand", proposer="fake", scorer="fake", **config), run_id="r-hand123")
        if scores:
            log.append(run, [StageStarted(stage=scores[0].stage, tasks=["source"]), *scores])
    return run


def _scored(prompt_id: str, text: str, objective: float, *, stage: str = "source", task: str = "source",
            **metrics: float | None) -> CandidateScored:
    return CandidateScored(stage=stage, step=1, prompt_id=prompt_id, text=text, task=task, n_examples=3,  # type: ignore[arg-type]
                           metrics=metrics or {"accuracy": objective}, objective=objective)


def assert_one_error_line(code: int, out: str, err: str, says: str) -> None:
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and says in err, err


# -- the three formats -------------------------------------------------------------------


def test_json_export_names_the_scoring_event_and_its_metrics(cli, finished) -> None:
    db, run_id = finished
    code, out, err = cli("--db", str(db), "export", run_id, "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    with EventLog(db, readonly=True) as log:
        state = log.state(run_id)
        events = {se.seq: se for se in log.events(run_id)}
    best = state.best("target")
    assert best is not None
    assert data["format"] == EXPORT_FORMAT and data["format_version"] == 1
    assert data["prompt"] == best.text and data["prompt_id"] == best.prompt_id
    p = data["provenance"]
    assert (p["run_id"], p["stage"], p["step"], p["tprompt_version"]) == (run_id, "target", best.step, tp.__version__)
    scored = events[p["seq"]]
    assert scored.type == "candidate.scored" and scored.event.prompt_id == best.prompt_id
    assert p["metrics"] == scored.event.metrics and p["objective"] == scored.event.objective
    tested = state.tested["best_target"]
    assert p["test"] == {"role": "best_target", "seq": tested.seq, "task": "arc_challenge",
                         "n_examples": tested.n_examples, "metrics": tested.metrics, "objective": tested.objective}
    assert events[p["test"]["seq"]].type == "prompt.tested"
    assert p["models"] == {"proposer": "fake", "scorer": "fake", "base_url": None}
    assert p["tasks"] == {"source": ["ai2_science"], "target": "arc_challenge"}
    assert p["fork_of"] is None and p["run_status"] == "completed"
    assert f"seq {p['seq']}" in err  # a diagnostic line, on stderr


def test_text_export_is_the_prompt_alone(cli, finished) -> None:
    db, run_id = finished
    code, out, _ = cli("--db", str(db), "export", run_id)
    with EventLog(db, readonly=True) as log:
        best = log.state(run_id).best("target")
    assert code == 0 and best is not None and out == best.text + "\n"
    code, out, _ = cli("--db", str(db), "export", run_id, "--stage", "source")
    with EventLog(db, readonly=True) as log:
        source_best = log.state(run_id).best("source")
    assert code == 0 and source_best is not None and out == source_best.text + "\n"


def test_langchain_export_loads_back_and_formats(cli, finished) -> None:
    from langchain_core.load import loads
    from langchain_core.messages import HumanMessage, SystemMessage
    from langchain_core.prompts import ChatPromptTemplate

    db, run_id = finished
    code, out, err = cli("--db", str(db), "export", run_id, "--format", "langchain")
    assert code == 0, err
    _, as_json, _ = cli("--db", str(db), "export", run_id, "--format", "json")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # loads() says it is in beta
        template = loads(out)
    assert isinstance(template, ChatPromptTemplate)
    expected = json.loads(as_json)
    # The bundled task's declared Q&A template, formatted on a row: the scorer's request for that row.
    with EventLog(db) as log:
        ts = log.transcripts
        sent = [json.loads(ts.body(r.request_hash) or "{}")["messages"] for r in ts.rows([(run_id, None, None)])
                if r.agent == "scorer" and r.step == "test"]
    task = load_task("arc_challenge")
    rows = {ex.question: ex for ex in task.test}
    checked = 0
    for request in sent:
        if request[0][1] != expected["prompt"]:
            continue  # the test call of another prompt (original, best source)
        ex = next(e for q, e in rows.items() if f"Question: {q}\n" in request[-1][1])
        messages = template.format_messages(**row_values(ex))
        role = {SystemMessage: "system", HumanMessage: "user"}
        assert [[role[type(m)], m.content] for m in messages] == request
        checked += 1
    assert checked > 0
    assert template.metadata == {"tprompt": expected}


def test_langchain_template_keeps_braces_in_the_prompt_literal() -> None:
    from langchain_core.messages import SystemMessage

    found = PromptExport(prompt="Answer as {json} with {", prompt_id="p-x")
    assert found.to_langchain().format_messages(question="q")[0] == SystemMessage(content="Answer as {json} with {")


# -- --out, stages, and what cannot be exported -------------------------------------------


def test_out_writes_the_file_and_nothing_on_stdout(cli, finished, tmp_path: Path) -> None:
    db, run_id = finished
    target = tmp_path / "prompt.json"
    target.write_text("old contents that are longer than a prompt export would ever be " * 100)
    code, out, err = cli("--db", str(db), "export", run_id, "--format", "json", "--out", str(target))
    assert code == 0 and out == "" and str(target) in err
    assert json.loads(target.read_text())["provenance"]["run_id"] == run_id
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prompt.json"]  # no temporary file left


@pytest.mark.parametrize("where, says", [("missing/p.json", "does not exist"), (".", "is a directory")])
def test_out_that_cannot_be_written_is_refused(cli, finished, tmp_path: Path, where: str, says: str) -> None:
    db, run_id = finished
    before = sorted(tmp_path.iterdir())
    code, out, err = cli("--db", str(db), "export", run_id, "--out", str(tmp_path / where))
    assert_one_error_line(code, out, err, says)
    assert sorted(tmp_path.iterdir()) == before


def test_default_stage_is_source_while_the_target_has_nothing(cli, tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    run = _hand_made(db, _scored("p-1", "Think.", 0.5), _scored("p-2", "Think hard.", 0.75))
    code, out, _ = cli("--db", str(db), "export", run)
    assert code == 0 and out == "Think hard.\n"
    code, out, err = cli("--db", str(db), "export", run, "--stage", "target", "--out", str(tmp_path / "p.txt"))
    assert_one_error_line(code, out, err, "its target stage has no scored prompt")
    assert "--stage source" in err and not (tmp_path / "p.txt").exists()


def test_a_run_with_nothing_scored_or_unknown_is_one_line(cli, tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    run = _hand_made(db)
    code, out, err = cli("--db", str(db), "export", run, "--out", str(tmp_path / "p.txt"))
    assert_one_error_line(code, out, err, f"run {run}: nothing to export")
    assert not (tmp_path / "p.txt").exists()
    assert_one_error_line(*cli("--db", str(db), "export", "r-nope"), "no run 'r-nope'")
    assert_one_error_line(*cli("--db", str(db), "export", run, "--format", "yaml"), "unknown --format")
    assert_one_error_line(*cli("--db", str(db), "export", run, "--stage", "both"), "unknown --stage")


def test_several_source_tasks_give_each_scoring_event(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    _hand_made(db, _scored("p-1", "Think.", 0.5, task="a", accuracy=0.5, ece=None),
               _scored("p-1", "Think.", 0.7, task="b", accuracy=0.7, ece=0.1))
    with EventLog(db, readonly=True) as log:
        p = export_prompt(log.state("r-hand123")).provenance
    assert [(s["task"], s["seq"]) for s in p["scores"]] == [("a", 3), ("b", 4)]
    assert p["seq"] == 4 and p["objective"] == pytest.approx(0.6)
    assert p["metrics"]["accuracy"] == pytest.approx(0.6) and p["metrics"]["ece"] is None


def test_a_fork_names_its_parent(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    run = _hand_made(db, _scored("p-1", "Think.", 0.5))
    with EventLog(db) as log:
        fork = log.fork(run, 3, config={"proposer": "fake", "scorer": "fake"}, target_task="target")
        p = export_prompt(log.state(fork)).provenance
    assert p["run_id"] == fork and p["fork_of"] == {"run_id": run, "seq": 3, "from_prompt_id": None}
    assert p["seq"] == 3  # the scoring event is the parent's, seen through the fork


def test_no_credentials_leave_with_the_export(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    _hand_made(db, _scored("p-1", "Think.", 0.5), base_url="https://me:sk-SECRET@llm.example:8443/v1?api-key=K2#x")
    with EventLog(db, readonly=True) as log:
        found = export_prompt(log.state("r-hand123"))
    assert found.provenance["models"]["base_url"] == "https://llm.example:8443/v1"
    for fmt in ("text", "json", "langchain"):
        text = found.render(fmt)
        assert "SECRET" not in text and "K2" not in text and "me:" not in text
    assert public_url("http://[::1]:8000/v1") == "http://[::1]:8000/v1"
    assert public_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"


def _tested(role: str, prompt_id: str, text: str, objective: float) -> PromptTested:
    return PromptTested(role=role, prompt_id=prompt_id, text=text, task="source", n_examples=20,  # type: ignore[arg-type]
                        metrics={"accuracy": objective}, objective=objective)


@pytest.mark.parametrize("fmt", ["text", "json", "langfuse"])
def test_an_export_that_lost_to_the_original_on_the_test_split_says_so(cli, tmp_path: Path, fmt: str) -> None:
    db = tmp_path / "t.db"
    run = _hand_made(db, _scored("p-1", "Think.", 0.9))
    with EventLog(db) as log:
        log.append(run, [_tested("original", "p-0", "Answer.", 0.613), _tested("best_source", "p-1", "Think.", 0.342)])
    code, out, err = cli("--db", str(db), "export", run, "--stage", "source", "--format", fmt)
    assert code == 0, err
    # was: a training objective and no word that the exported prompt did worse than the original held out
    assert ("warning: p-1 lost to the original prompt on the held-out test split of source: objective 0.342 vs "
            "0.613 (-0.271, 20 examples)") in err
    assert f"(tprompt --db {db} show {run})" in err  # the hint works as printed
    if fmt == "json":
        vs = json.loads(out)["provenance"]["test_vs_original"]
        assert vs["lost"] is True and vs["original_objective"] == 0.613 and vs["delta"] == pytest.approx(-0.271)
        assert vs["original_prompt_id"] == "p-0"


def test_an_export_that_beat_the_original_on_the_test_split_has_no_warning(cli, tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    run = _hand_made(db, _scored("p-1", "Think.", 0.9))
    with EventLog(db) as log:
        log.append(run, [_tested("original", "p-0", "Answer.", 0.4), _tested("best_source", "p-1", "Think.", 0.5)])
    code, out, err = cli("--db", str(db), "export", run, "--stage", "source", "--format", "json")
    assert code == 0 and "warning" not in err, err
    vs = json.loads(out)["provenance"]["test_vs_original"]
    assert vs["lost"] is False and vs["delta"] == pytest.approx(0.1)
    untested = _hand_made(tmp_path / "u.db", _scored("p-1", "Think.", 0.9))
    code, out, err = cli("--db", str(tmp_path / "u.db"), "export", untested, "--format", "json")
    assert code == 0 and "warning" not in err and json.loads(out)["provenance"]["test_vs_original"] is None


# -- the Python API returns the same ------------------------------------------------------


def test_optimize_result_has_the_exported_prompt_and_provenance(cli, tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    state = tp.optimize(db, target="arc_challenge", model="fake", steps=1, candidates=2, examples=3,
                        test_examples=3, mode="generate")
    assert state.best_prompt is not None and state.best_prompt == state.best("target").text  # type: ignore[union-attr]
    _, out, _ = cli("--db", str(db), "export", state.run_id, "--format", "json")
    exported = json.loads(out)
    assert exported["prompt"] == state.best_prompt and exported["provenance"] == tp.export_prompt(state).provenance
    assert tp.export_prompt(state).to_dict() == exported
    (tmp_path / "best.json").write_text(out)
    again = tp.optimize(db, target="arc_challenge", model="fake", steps=1, candidates=2, examples=3, test_examples=3,
                        mode="generate", original_prompt=tp.read_prompt_file(tmp_path / "best.json"))
    assert again.original_prompt is not None and again.original_prompt.text == state.best_prompt


def test_a_run_with_nothing_scored_has_no_best_prompt(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    with EventLog(db) as log:
        state = log.state(_hand_made(db))
    assert state.best_prompt is None and state.best_overall() is None
    with pytest.raises(UsageError, match="nothing to export"):  # no provenance either
        export_prompt(state)


# -- loaded back as the original prompt of a new run ---------------------------------------


def _run_args(db: Path) -> list[str]:
    return ["--db", str(db), "run", "--source", "ai2_science", "--target", "arc_challenge", "--model", "fake",
            "--steps", "1", "--candidates", "2", "--examples", "3", "--test-examples", "3", "--mode", "generate",
            "--json"]


def test_a_new_run_starts_from_a_json_export(cli, finished, tmp_path: Path) -> None:
    db, run_id = finished
    export_file = tmp_path / "best.json"
    assert cli("--db", str(db), "export", run_id, "--format", "json", "--out", str(export_file))[0] == 0
    exported = json.loads(export_file.read_text())
    new_db = tmp_path / "new.db"
    code, out, err = cli(*_run_args(new_db), "--prompt-file", str(export_file))
    assert code == 0, err
    with EventLog(new_db, readonly=True) as log:
        state = log.state(json.loads(out)["run_id"])
    assert state.status == "completed"
    assert state.original_prompt is not None and state.original_prompt.text == exported["prompt"]
    assert state.original_prompt.prompt_id == exported["prompt_id"]
    assert state.tested["original"].text == exported["prompt"]


def test_text_and_langchain_exports_and_config_files_load_back(cli, finished, tmp_path: Path) -> None:
    db, run_id = finished
    for fmt, name in (("text", "best.txt"), ("langchain", "best.lc.json"), ("json", "best.json")):
        assert cli("--db", str(db), "export", run_id, "--format", fmt, "--out", str(tmp_path / name))[0] == 0
    prompt = json.loads((tmp_path / "best.json").read_text())["prompt"]
    assert read_prompt_file(tmp_path / "best.txt") == prompt
    assert read_prompt_file(tmp_path / "best.lc.json") == prompt
    config = tmp_path / "run.toml"
    config.write_text(f'prompt_file = "{tmp_path / "best.json"}"\nsteps = 1\n')
    assert load_config_file(config)["original_prompt"] == prompt
    config.write_text(f'prompt_file = "{tmp_path / "best.json"}"\noriginal_prompt = "x"\n')
    with pytest.raises(UsageError, match="not both"):
        load_config_file(config)


@pytest.mark.parametrize(
    "contents, says",
    [
        ('{"prompt": "Think."}', 'not a prompt exported by tprompt'),
        ('{"format": "tprompt.prompt", "format_version": 99, "prompt": "Think."}', "format version 99"),
        ('{"format": "tprompt.prompt", "format_version": "1", "prompt": "Think."}', '"format_version" is \'1\', not a whole'),
        ('{"format": "tprompt.prompt", "format_version": 1, "prompt": "  "}', "is empty"),
        ("{not json", "not valid JSON"),
    ],
)
def test_a_json_file_that_is_not_an_export_is_refused(cli, tmp_path: Path, contents: str, says: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(contents)
    db = tmp_path / "t.db"
    assert_one_error_line(*cli(*_run_args(db), "--prompt-file", str(bad)), says)
    assert not db.exists()


def test_prompt_and_prompt_file_together_are_refused(cli, tmp_path: Path) -> None:
    text = tmp_path / "p.txt"
    text.write_text("Think.\n")
    db = tmp_path / "t.db"
    assert_one_error_line(*cli(*_run_args(db), "--prompt", "x", "--prompt-file", str(text)), "not both")
    assert not db.exists()


def test_export_has_help_with_an_example(cli) -> None:
    code, out, _ = cli("export", "--help")
    assert code == 0 and "Example: tprompt export" in out
