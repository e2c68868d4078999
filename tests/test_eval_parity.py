"""`eval` takes `run`'s options (issue 29): `--program`, `--config` (the same file as `run --config`) and
`--extra-body`, so a run's prompts score under eval what the run's test table says, from its cached calls."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import cli_in_process as cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The dates and program examples in a fresh working folder (their modules import from there)."""
    for folder in ("dates", "program"):
        for path in (ROOT / "examples" / folder).iterdir():
            if path.is_file():
                shutil.copy(path, tmp_path / path.name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_eval_program_scores_the_runs_prompt_sets_from_its_cache(here: Path, capsys) -> None:
    db = str(here / "t.db")
    code, out, err = cli(capsys, "--db", db, "run", "--program", "pubmed:run", "--target", "pubmedqa.jsonl",
                         "--model", "fake", "--steps", "1", "--candidates", "2", "--examples", "3",
                         "--test-examples", "4", "--json")
    assert code == 0, err
    table = {r["role"]: r for r in json.loads(out)["table"]}
    code, out, err = cli(capsys, "--db", db, "eval", "--program", "pubmed:run", "--task", "pubmedqa.jsonl",
                         "--model", "fake", "-n", "4", "--prompt", table["best_target"]["prompt"], "--json")
    assert code == 0, err
    (best,) = json.loads(out)["results"]
    code, out, err = cli(capsys, "--db", db, "eval", "--program", "pubmed:run", "--task", "pubmedqa.jsonl",
                         "--model", "fake", "-n", "4", "--json")
    assert code == 0, err
    (original,) = json.loads(out)["results"]
    assert original["label"] == "pubmed:run PROMPTS"
    for role, got in (("original", original), ("best_target", best)):
        assert got["prompt_id"] == table[role]["prompt_id"]
        assert got["objective"] == table[role]["objective"]
        assert got["counts"]["model_calls"] == 0  # the program's calls, cached by the run
        assert got["answers"] and all(a["call_id"] for a in got["answers"])


def test_eval_config_is_the_runs_config_file(here: Path, capsys) -> None:
    db = str(here / "t.db")
    config = here / "dates.toml"
    config.write_text('target_task = "dates.jsonl"\nprompt_file = "template.json"\nmodel = "fake"\n'
                      'metrics = ["datemetrics:iso_date"]\ntest_examples = 5\nseed = 3\nsteps = 1\ncandidates = 2\n'
                      'examples = 4\n')
    code, out, err = cli(capsys, "--db", db, "run", "--config", str(config), "--json")
    assert code == 0, err
    table = {r["role"]: r for r in json.loads(out)["table"]}
    code, out, err = cli(capsys, "--db", db, "eval", "--config", str(config), "--json")
    assert code == 0, err
    data = json.loads(out)
    assert (data["task"], data["model"], data["seed"]) == ("dates.jsonl", "fake", 3)
    (original,) = data["results"]
    assert original["label"] == str(config) and original["template"]
    assert original["prompt_id"] == table["original"]["prompt_id"]
    assert original["objective"] == table["original"]["objective"] and "iso_date" in original["metrics"]
    assert original["counts"] == {**original["counts"], "examples": 5, "model_calls": 0, "cache_hits": 5}
    # options override the file: another prompt, another example count
    code, out, err = cli(capsys, "--db", db, "eval", "--config", str(config), "--prompt", "Reply with the date.",
                         "-n", "2", "--json")
    assert code == 0, err
    (other,) = json.loads(out)["results"]
    # scored in the file's template, as `run --config dates.toml --prompt TEXT` would score it
    assert other["label"] == "prompt 1" and other["counts"]["examples"] == 2 and other["template"]


@pytest.mark.parametrize(("args", "says"), [
    (["--extra-body", "{repeat_penalty: 1}"], "--extra-body: not JSON (Expecting property name enclosed in double "
                                              "quotes at column 2); give one such as '{\"repeat_penalty\": 1.0}'"),
    (["--extra-body", "[1, 2]"], "--extra-body: expected a JSON object, not an array"),
    (["--extra-body", '{"max_tokens": 4}'], "extra_body: max_tokens is set by tprompt itself"),
    (["--extra-body", '{"repeat_penalty": 1.0}'], "extra_body is sent to OpenAI-compatible servers"),
    (["--config", "nope.toml"], "nope.toml"),
    (["--program", "nosuchmod_prog:run"], "module nosuchmod_prog does not import"),
])
@pytest.mark.parametrize("command", ["run", "eval"])
def test_bad_parity_options_one_line_nothing_written(here: Path, capsys, command: str, args: list[str],
                                                      says: str) -> None:
    task = ["--target", "dates.jsonl"] if command == "run" else ["--task", "dates.jsonl"]
    code, out, err = cli(capsys, "--db", "t.db", command, *task, "--model", "fake", *args)
    assert code == 2, err
    assert err.count("\n") == 1 and says in err, err
    assert out == "" and not (here / "t.db").exists()


def test_eval_without_a_task_says_where_to_give_one(here: Path, capsys) -> None:
    (here / "c.toml").write_text('model = "fake"\n')
    code, out, err = cli(capsys, "--db", "t.db", "eval", "--config", "c.toml")
    assert code == 2 and err.count("\n") == 1 and out == ""
    assert "eval needs a task: give --task TASK" in err and not (here / "t.db").exists()


def test_a_shared_option_error_names_the_option_as_run_does(here: Path, capsys) -> None:
    # was: "options (default): mode: ..." (the default prompt's label, read as "the default options")
    lines = {}
    for command, task in (("run", "--target"), ("eval", "--task")):
        code, out, err = cli(capsys, "--db", "t.db", command, task, "dates.jsonl", "--model", "fake", "--mode", "bogus")
        assert code == 2 and out == "" and err.count("\n") == 1, err
        lines[command] = err
    assert lines["eval"] == lines["run"] == "error: options: mode: Input should be 'auto', 'generate' or 'logprob'\n"
    code, _, err = cli(capsys, "--db", "t.db", "eval", "--task", "dates.jsonl", "--model", "fake",
                       "--prompt", "a", "--prompt", "b", "--judge", " ")
    assert code == 2 and err.startswith("error: options: judge is an empty model spec"), err
    # a problem of one prompt names the option that gave it
    (here / "two.json").write_text(json.dumps({"messages": [
        {"role": "system", "content": "x"}, {"role": "user", "content": "{question}"},
        {"role": "system", "content": "y", "optimize": True}]}))
    code, _, err = cli(capsys, "--db", "t.db", "eval", "--task", "arc_challenge", "--model", "fake",
                       "--prompt-file", "two.json")
    assert code == 2 and err.startswith("error: --prompt-file two.json: the template has 2 optimizable messages"), err
    assert not (here / "t.db").exists()


def test_a_text_prompt_beside_a_template_is_scored_in_it(here: Path, capsys) -> None:
    # was: --prompt TEXT beside --prompt-file template.json was scored in the bundled Q&A wrapper, silently
    db = str(here / "t.db")
    text = "Reply with the ISO date only."
    common = ("--db", db, "eval", "--task", "dates.jsonl", "--model", "fake", "-n", "4", "--json")
    code, out, err = cli(capsys, *common, "--prompt-file", "template.json", "--prompt", text)
    assert code == 0, err
    given, _original = json.loads(out)["results"]
    assert given["template"] and given["prompt"] == text
    # the scorer was sent the template rendered on the row with the text in its system message, nothing else
    from tprompt.stores import EventLog

    rows = {r["id"]: r for r in map(json.loads, (here / "dates.jsonl").read_text().splitlines()) if "id" in r}
    with EventLog(db) as log:
        for answer in given["answers"]:
            row = log.transcripts.call(answer["call_id"])
            assert row is not None
            sent = json.loads(log.transcripts.body(row.request_hash) or "{}")["messages"]
            sentence = rows[answer["example_id"]]["sentence"]
            assert [m["content"] if isinstance(m, dict) else m[1] for m in sent] == [text, f"Sentence: {sentence}\nISO date:"]
    # text that breaks the template's placeholders, or two different templates: one line naming it
    code, out, err = cli(capsys, "--db", "u.db", "eval", "--task", "dates.jsonl", "--model", "fake",
                         "--prompt-file", "template.json", "--prompt", "Date of {when}")
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert "--prompt: original_prompt does not fit the template: it invents placeholder(s) {when}" in err
    other = {"messages": [{"role": "system", "content": "x"}, {"role": "user", "content": "S: {sentence}"}]}
    (here / "other.json").write_text(json.dumps(other))
    code, out, err = cli(capsys, "--db", "u.db", "eval", "--task", "dates.jsonl", "--model", "fake",
                         "--prompt-file", "template.json", "--prompt-file", "other.json", "--prompt", text)
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert "--prompt is scored in the template given beside it, and template.json and other.json are different" in err
    assert not (here / "u.db").exists()


def test_a_program_given_as_a_file_is_the_same_program(here: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    # was: "--program ./pubmed.py:run" -> "module ./pubmed.py does not import"; a file path is read as its module
    import sys

    monkeypatch.delitem(sys.modules, "pubmed", raising=False)  # an earlier test's, from its own folder
    db = str(here / "t.db")
    common = ("--db", db, "eval", "--task", "pubmedqa.jsonl", "--model", "fake", "-n", "3", "--json")
    code, out, err = cli(capsys, *common, "--program", "pubmed:run")
    assert code == 0, err
    (by_module,) = json.loads(out)["results"]
    code, out, err = cli(capsys, *common, "--program", str(here / "pubmed.py") + ":run")
    assert code == 0, err
    (by_file,) = json.loads(out)["results"]
    assert by_file["label"] == "pubmed:run PROMPTS" and by_file["objective"] == by_module["objective"]
    assert by_file["counts"]["model_calls"] == 0  # the same requests: from the cache
