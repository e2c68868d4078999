"""The user's template is the unit (issue 29): own rows with own fields, a template with placeholders, a
description; the scorer is sent the template rendered on a row and nothing else, the proposer sees the task,
and the export is what was scored."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from tprompt.errors import UsageError
from tprompt.evaluator import load_task
from tprompt.evaluator.parsing import MISSING_CONFIDENCE, parse_reply
from tprompt.evaluator.template import ChatTemplate, from_messages, row_values
from tprompt.prompt_file import read_prompt_source, template_from_langchain
from tprompt.stores import EventLog, StepProposed

DESCRIPTION = "Rewrite the date in the sentence as an ISO date (YYYY-MM-DD), and nothing else."
SYSTEM = "Extract the date."
USER = "Sentence: {sentence}\nWho: {person}\nReply with the ISO date only."
MONTHS = ["January", "February", "March", "April", "May", "June"]


def _rows() -> list[dict[str, str]]:
    return [{"id": f"d{i}", "sentence": f"It happened on the {i + 1}th of {MONTHS[i % 6]}, 19{70 + i}.",
             "person": f"person {i} {{braces}}", "reference": f"19{70 + i}-{i % 6 + 1:02d}-{i + 1:02d}"}
            for i in range(12)]


@pytest.fixture
def own(tmp_path: Path) -> tuple[Path, Path]:
    """A JSONL task with a description header line, and a JSON template of two messages."""
    task = tmp_path / "dates.jsonl"
    task.write_text("\n".join(json.dumps(r) for r in [{"description": DESCRIPTION}, *_rows()]) + "\n")
    template = tmp_path / "template.json"
    template.write_text(json.dumps({"name": "dates", "messages": [
        {"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}]}))
    return task, template


def _run_args(db: Path, task: Path, *more: str) -> list[str]:
    return ["--db", str(db), "run", "--target", str(task), "--model", "fake", "--config", str(_no_transfer(db)),
            "--steps", "1", "--candidates", "2", "--examples", "4", "--test-examples", "3", *more]


def _no_transfer(db: Path) -> Path:
    config = db.with_name("target_only.toml")
    config.write_text("transfer = false\n")
    return config


def _requests(db: Path, agent: str) -> list[dict]:
    with EventLog(db) as log:
        run_id = log.runs()[0].run_id
        ts = log.transcripts
        return [json.loads(ts.body(r.request_hash) or "{}") for r in ts.rows([(run_id, None, None)]) if r.agent == agent]


def _own_run(cli, tmp_path: Path, own: tuple[Path, Path], *more: str) -> Path:
    task, template = own
    db = tmp_path / "t.db"
    code, _, err = cli(*_run_args(db, task, "--prompt-file", str(template), *more))
    assert code == 0, err
    return db


# -- what the scorer and the proposer are sent ------------------------------------------------


def test_scorer_request_is_the_template_rendered_on_the_row_and_nothing_else(cli, tmp_path, own) -> None:
    db = _own_run(cli, tmp_path, own)
    rows = {r["sentence"]: r for r in _rows()}
    scorer = _requests(db, "scorer")
    assert scorer
    for request in scorer:
        user = request["messages"][-1][1]
        row = next(r for s, r in rows.items() if s in user)
        system = request["messages"][0][1]
        # character for character: the template's own text, str.format'ed on the raw row, nothing around it
        assert request["messages"] == [["system", system], ["user", USER.format(**row)]]
        assert request["templates"][0].startswith("template.dates@")
    assert {r["messages"][0][1] for r in scorer} >= {SYSTEM}


def test_proposer_sees_the_description_the_references_and_the_template(cli, tmp_path, own) -> None:
    db = _own_run(cli, tmp_path, own)
    meta = _requests(db, "proposer")[0]["messages"][-1][1]
    assert DESCRIPTION in meta
    refs = {r["reference"] for r in _rows()}
    shown = [line[3:] for line in meta.splitlines() if line.startswith("A: ")]
    assert shown and all(a in refs for a in shown)  # exemplars show the reference, not a blank
    assert "[system] <INSTRUCTION>\n[user] Sentence: {sentence}\nWho: {person}" in meta


def test_description_option_overrides_the_file_and_is_recorded(cli, tmp_path, own) -> None:
    db = _own_run(cli, tmp_path, own, "--description", "Dates, ISO style.")
    meta = _requests(db, "proposer")[0]["messages"][-1][1]
    assert "Dates, ISO style." in meta and DESCRIPTION not in meta
    with EventLog(db) as log:
        assert log.state(log.runs()[0].run_id).config.description == "Dates, ISO style."


def test_description_from_a_sidecar_file(tmp_path: Path) -> None:
    task = tmp_path / "mine.jsonl"
    task.write_text("\n".join(json.dumps(r) for r in _rows()) + "\n")
    (tmp_path / "mine.description.txt").write_text(DESCRIPTION + "\n")
    assert load_task(str(task)).description == DESCRIPTION
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "train.jsonl").write_text("\n".join(json.dumps(r) for r in _rows()[:4]) + "\n")
    (folder / "test.jsonl").write_text("\n".join(json.dumps(r) for r in _rows()[4:]) + "\n")
    (folder / "description.txt").write_text("Folder task.")
    loaded = load_task(str(folder))
    assert loaded.description == "Folder task."
    assert loaded.train[0].fields["sentence"] == _rows()[0]["sentence"] and "reference" not in loaded.train[0].fields


# -- what comes out is what was scored --------------------------------------------------------


def test_langchain_export_formats_a_row_to_the_messages_scored(cli, tmp_path, own) -> None:
    from langchain_core.load import loads
    from langchain_core.prompts import ChatPromptTemplate

    db = _own_run(cli, tmp_path, own)
    with EventLog(db) as log:
        run_id = log.runs()[0].run_id
    code, out, err = cli("--db", str(db), "export", run_id, "--format", "langchain")
    assert code == 0, err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # loads() says it is in beta
        exported = loads(out)
    assert isinstance(exported, ChatPromptTemplate)
    _, as_json, _ = cli("--db", str(db), "export", run_id, "--format", "json")
    best = json.loads(as_json)
    assert best["template"]["messages"][1]["content"] == USER
    role = {"system": "system", "human": "user"}
    checked = 0
    for request in _requests(db, "scorer"):
        if request["messages"][0][1] != best["prompt"]:
            continue
        row = next(r for r in _rows() if r["sentence"] in request["messages"][-1][1])
        formatted = exported.format_messages(**row)
        assert [[role[m.type], m.content] for m in formatted] == request["messages"]
        checked += 1
    assert checked > 0
    # and it reads back as the same template for a next run
    path = tmp_path / "best.lc.json"
    path.write_text(out)
    again = read_prompt_source(path)
    assert isinstance(again, ChatTemplate) and again.original_text == best["prompt"]


def test_python_api_takes_a_langchain_template_object(tmp_path: Path) -> None:
    from langchain_core.prompts import ChatPromptTemplate

    from tprompt import optimize, task_from_records

    task = task_from_records("dates", _rows(), description=DESCRIPTION)
    prompt = ChatPromptTemplate.from_messages([("system", SYSTEM), ("human", USER)])
    state = optimize(tmp_path / "t.db", target=task, transfer=False, model="fake", steps=1, candidates=2,
                     examples=4, test_examples=3, template=prompt)
    assert state.status == "completed" and state.config.template is not None
    assert state.config.template.messages[1].content == USER


# -- templates as files ------------------------------------------------------------------------


def test_toml_yaml_and_double_brace_templates(tmp_path: Path) -> None:
    toml = tmp_path / "t.toml"
    toml.write_text('name = "t"\n[[messages]]\nrole = "system"\ncontent = "Be exact."\n'
                    '[[messages]]\nrole = "user"\ncontent = "{sentence}"\n')
    yaml = tmp_path / "t.yaml"
    yaml.write_text("messages:\n  - role: system\n    content: Be exact.\n  - role: human\n    content: '{{ sentence }} {json: 1}'\n")
    a, b = read_prompt_source(toml), read_prompt_source(yaml)
    assert isinstance(a, ChatTemplate) and isinstance(b, ChatTemplate)
    assert a.fields == ("sentence",) and b.fields == ("sentence",)
    assert b.render("Be exact.", {"sentence": "s"}) == (("system", "Be exact."), ("user", "s {json: 1}"))


def test_explicit_optimize_flags_and_several_optimizable_messages() -> None:
    t = from_messages([{"role": "system", "content": "A"}, {"role": "user", "content": "Q: {q}", "optimize": True}],
                      name="two", where="test")
    assert t.optimizable == (0, 1)
    text = t.candidate_text(["B", "Question: {q}"])
    assert t.render(text, {"q": "x"}) == (("system", "B"), ("user", "Question: x"))
    assert t.placeholder_problem(t.candidate_text(["B", "Question:"])) == "drops placeholder(s) {q}"
    assert t.placeholder_problem(t.candidate_text(["B {r}", "{q}"])) == "invents placeholder(s) {r}"


def test_a_proposal_that_drops_a_placeholder_is_recorded_as_rejected(cli, tmp_path: Path, own) -> None:
    task, _ = own
    template = tmp_path / "marked.json"
    template.write_text(json.dumps([{"role": "user", "content": "Date of: {sentence}", "optimize": True}]))
    db = tmp_path / "t.db"
    code, _, err = cli(*_run_args(db, task, "--prompt-file", str(template)))
    assert code == 0, err
    with EventLog(db) as log:
        run_id = log.runs()[0].run_id
        proposed = [e.event for e in log.events(run_id) if isinstance(e.event, StepProposed) and e.event.step > 0]
    rejected = [r for e in proposed for r in e.rejected]
    assert rejected and all(r.reason == "drops placeholder(s) {sentence}" for r in rejected)
    scored = {json.dumps(r["messages"]) for r in _requests(db, "scorer")}
    assert all("Date of: " in m for m in scored)  # nothing broken was ever sent


# -- label tasks: the answer read from a free reply ---------------------------------------------


@pytest.mark.parametrize(
    "reply, answer, in_format",
    [
        ("Yes", "Yes", True),
        ("yes.", "Yes", True),
        ("**No**\nBecause the man lied.", "No", True),
        ("I think the answer is no, since he lied.", "No", False),
        ("Answer: Yes\nConfidence: 80%", "Yes", True),
        ("Hard to say.", None, False),
    ],
)
def test_label_reply_without_answer_line(reply: str, answer: str | None, in_format: bool) -> None:
    parsed = parse_reply(reply, kind="string", answer_space=("Yes", "No"))
    assert (parsed.answer, parsed.followed_format) == (answer, in_format)


def test_choice_reply_and_confidence() -> None:
    parsed = parse_reply("B) Paris", kind="choice", choices=("Rome", "Paris"))
    assert (parsed.answer, parsed.followed_format, parsed.confidence) == ("B", True, None)
    assert parse_reply("Paris, confidence 90%", kind="choice", choices=("Rome", "Paris")).confidence == 0.9
    assert MISSING_CONFIDENCE == 0.5


def test_declared_qa_template_renders_what_the_scorer_sends_for_bundled_tasks() -> None:
    from tprompt.evaluator.prompts import declared_template
    from tprompt.evaluator.scoring import _messages

    for name in ("arc_challenge", "gsm8k", "bbh/navigate", "pubmedqa_long", "bbh/date_understanding"):
        task = load_task(name)
        for logprob in (False, True) if task.kind == "choice" or task.answer_space else (False,):
            declared = declared_template(task, logprob=logprob)
            for ex in task.test[:4]:
                for prompt in ("Think {step} by step.", ""):
                    literal = prompt.replace("{", "{{").replace("}", "}}")
                    assert declared.render(literal, row_values(ex)) == _messages(prompt, ex, task, logprob), name


# -- bad input: one line, exit 2, nothing written ----------------------------------------------


def _refused(cli, db: Path, args: list[str], says: str) -> None:
    code, out, err = cli(*args)
    assert code == 2 and out == "", (code, out, err)
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and says in err, err
    assert not db.exists()


def test_template_naming_a_field_no_row_has(cli, tmp_path: Path, own) -> None:
    task, _ = own
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"role": "system", "content": "Hi."}, {"role": "user", "content": "{sentense}"}]))
    db = tmp_path / "t.db"
    _refused(cli, db, _run_args(db, task, "--prompt-file", str(bad)),
             f"task {task}: the template names {{sentense}}, which row d")


def test_template_with_no_message_the_proposer_may_rewrite(cli, tmp_path: Path, own) -> None:
    task, _ = own
    bad = tmp_path / "bad.yaml"
    bad.write_text("messages:\n  - role: user\n    content: '{sentence}'\n")
    db = tmp_path / "t.db"
    _refused(cli, db, _run_args(db, task, "--prompt-file", str(bad)), f"{bad}: no message the proposer may rewrite")


@pytest.mark.parametrize(
    "name, contents, says",
    [
        ("t.xml", "<messages/>", "unknown format '.xml'"),
        ("t.json", '{"messages": [', "not valid JSON"),
        ("t.toml", "[[messages]\nrole = 1", "not valid TOML"),
        ("t.yaml", "messages: [\n  - role", "not valid YAML"),
        ("t.json", '{"messages": [{"role": "robot", "content": "x"}]}', "message 1 has role 'robot'"),
        ("t.json", '{"messages": [{"role": "system", "content": "{a.b}"}]}', "bad placeholder {a.b}"),
        ("t.json", '{"messages": [{"role": "system", "content": "x"}, {"role": "user", "content": "{answer}"}]}',
         "which hold(s) the gold answer"),
    ],
)
def test_template_file_in_an_unknown_format_or_with_a_syntax_error(cli, tmp_path: Path, own, name: str,
                                                                    contents: str, says: str) -> None:
    task, _ = own
    bad = tmp_path / name
    bad.write_text(contents)
    db = tmp_path / "t.db"
    _refused(cli, db, _run_args(db, task, "--prompt-file", str(bad)), says)
    assert str(bad) in cli(*_run_args(db, task, "--prompt-file", str(bad)))[2]


def test_description_longer_than_the_prompt_limit(cli, tmp_path: Path, own) -> None:
    task, template = own
    db = tmp_path / "t.db"
    _refused(cli, db, _run_args(db, task, "--prompt-file", str(template), "--description", "x" * 2001),
             "the description has 2001 characters")
    long_header = tmp_path / "long.jsonl"
    long_header.write_text("\n".join(json.dumps(r) for r in [{"description": "y" * 2001}, *_rows()]) + "\n")
    _refused(cli, db, _run_args(db, long_header), f"{long_header}:1: the description has 2001 characters")
    from tprompt import task_from_records

    with pytest.raises(UsageError, match="the description has 2001 characters"):
        task_from_records("dates", _rows(), description="z" * 2001)


def test_a_langchain_object_with_a_messages_placeholder_is_refused() -> None:
    from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder

    prompt = ChatPromptTemplate.from_messages([("system", "Be brief."), MessagesPlaceholder("history")])
    with pytest.raises(UsageError, match="message 2 is a MessagesPlaceholder"):
        template_from_langchain(prompt)


def test_a_langchain_objects_partial_variables_are_filled_in_as_langchain_fills_them(tmp_path: Path) -> None:
    # was: "the template names {lang}, which row d0 lacks ... rename the placeholder": a partial was taken for a field
    from langchain_core.load import dumps
    from langchain_core.prompts import ChatPromptTemplate, HumanMessagePromptTemplate, PromptTemplate

    human = HumanMessagePromptTemplate(prompt=PromptTemplate.from_template("Tone {tone}. {sentence}").partial(tone="dry"))
    prompt = ChatPromptTemplate.from_messages([("system", "Answer in {lang}, {{ISO}}."), human]).partial(lang="e{n}")
    path = tmp_path / "lc.json"
    path.write_text(dumps(prompt))
    role = {"system": "system", "human": "user"}
    for template in (template_from_langchain(prompt), read_prompt_source(path)):
        assert isinstance(template, ChatTemplate) and template.fields == ("sentence",)
        for row in _rows()[:3]:
            expected = tuple((role[m.type], m.content) for m in prompt.format_messages(sentence=row["sentence"]))
            assert template.render(template.original_text, {"sentence": row["sentence"]}) == expected
    with pytest.raises(UsageError, match=r"partial variable \{lang\} is a function"):
        template_from_langchain(prompt.partial(lang=lambda: "en"))


def test_the_readme_example_runs_as_printed(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """README "What to do next": examples/dates, its template, rows and metric (on the fake model here)."""
    monkeypatch.chdir(Path(__file__).parents[1] / "examples" / "dates")
    db = tmp_path / "t.db"
    code, _, err = cli("--db", str(db), "run", "--target", "dates.jsonl", "--target-only", "--prompt-file",
                       "template.json", "--metric", "datemetrics:iso_date", "--model", "fake", "--steps", "1",
                       "--candidates", "2", "--examples", "4", "--test-examples", "4")
    assert code == 0, err
    with EventLog(db) as log:
        run_id = log.runs()[0].run_id
        assert log.state(run_id).config.template.name == "dates"  # type: ignore[union-attr]
    out = tmp_path / "dates_prompt.json"
    code, _, err = cli("--db", str(db), "export", run_id, "--format", "langchain", "--out", str(out))
    assert code == 0, err
    assert isinstance(read_prompt_source(out), ChatTemplate)


def test_review_refuses_an_edit_that_breaks_the_templates_placeholders(cli, tmp_path, own) -> None:
    # was: accepted (a step.revised with "Reply with {date} only."), then resume failed the run for good:
    # "the template names {date}, which the row lacks" (a failed run that fails again on every resume)
    task, template = own
    db = tmp_path / "t.db"
    code, _, err = cli(*_run_args(db, task, "--prompt-file", str(template), "--review"))
    assert code == 0, err
    with EventLog(db) as log:
        run_id = log.runs()[0].run_id

    def revised() -> list[object]:
        with EventLog(db, readonly=True) as log:
            return [e for e in log.events(run_id) if e.type == "step.revised"]

    for option, value, why in (("--edit", "1=Reply with {date} only.", "invents placeholder(s) {date}"),
                               ("--add", "Say it for {person}.", "invents placeholder(s) {person}"),
                               ("--add", "Reply with the date }", "bad placeholder")):
        code, _, err = cli("--db", str(db), "review", run_id, option, value, "--accept")
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert "does not fit the run's prompt template" in err and why in err, err
        assert revised() == []  # nothing written
    code, _, err = cli("--db", str(db), "review", run_id, "--edit", "1=Reply with the date only, {{as ISO}}.",
                       "--accept", "--resume")
    assert code == 0, err
    with EventLog(db, readonly=True) as log:
        assert log.state(run_id).status == "completed"
