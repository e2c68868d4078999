"""A program's best set exported for LangChain (issue 31): one ChatPromptTemplate per prompt, keyed by name,
each with the whole export (provenance) in its metadata, read back as a new program run's prompt set."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.load import loads
from langchain_core.prompts import ChatPromptTemplate
from test_program import NAMES, exported_json, folder, start  # noqa: F401  (folder: a fixture)

from tprompt.cli import main
from tprompt.stores import EventLog
from tprompt.stores.events import StepProposed


def test_the_langchain_export_of_a_program_holds_every_prompt_by_name_with_provenance(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    db = tmp_path / "t.db"
    run_id = start(capsys, db)
    exported = exported_json(capsys, db, run_id)
    out = tmp_path / "best.langchain.json"
    assert main(["--db", str(db), "export", run_id, "--format", "langchain", "--out", str(out)]) == 0
    templates = loads(out.read_text(), allowed_objects="core")
    assert list(templates) == NAMES
    for name, template in templates.items():
        assert isinstance(template, ChatPromptTemplate)
        [message] = template.format_messages()
        assert message.type == "system" and message.content == exported["prompts"][name]
        meta = template.metadata["tprompt"]
        assert meta["name"] == name and meta["program"] == "pubmed:run" and meta["prompts"] == exported["prompts"]
        assert meta["provenance"] == exported["provenance"] and meta["provenance"]["run_id"] == run_id
    # read back: a new run of the program starts from the exported set
    capsys.readouterr()
    again = start(capsys, tmp_path / "again.db", "--prompt-file", str(out))
    with EventLog(str(tmp_path / "again.db")) as log:
        first = next(se.event for se in log.events(again) if isinstance(se.event, StepProposed))
    assert first.candidates[0].prompts == exported["prompts"]


def test_langchain_objects_keyed_by_name_not_from_a_program_export_are_one_line(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    from langchain_core.load import dumps

    mine = tmp_path / "mine.json"
    mine.write_text(dumps({"answer": ChatPromptTemplate.from_messages([("system", "Answer.")])}))
    db = tmp_path / "t.db"
    capsys.readouterr()
    code = main(["--db", str(db), "run", "--program", "pubmed:run", "--target", "pubmedqa.jsonl", "--model", "fake",
                 "--prompt-file", str(mine)])
    err = capsys.readouterr().err
    assert code == 2 and "LangChain objects keyed by name, not a program's prompts exported by tprompt" in err, err
    assert not db.exists()
