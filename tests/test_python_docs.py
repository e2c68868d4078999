"""docs/python.md's examples run as written, in order, in one namespace (as a reader pastes them), on the fake model.

The examples name ``model="fake"`` themselves (the doc says so and names real models beside it), so nothing is
substituted here: what runs is what the doc shows.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "python.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", text, re.S | re.M)


def test_every_python_example_of_the_doc_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TPROMPT_DB", raising=False)
    blocks = python_blocks(DOC.read_text())
    assert len(blocks) >= 5, "the doc's python blocks were not found"
    namespace: dict[str, object] = {"__name__": "docs_python_md"}
    for i, block in enumerate(blocks):
        assert "openai:" not in re.sub(r"#.*", "", block), f"block {i + 1} calls a served model"
        exec(compile(block, f"docs/python.md, python block {i + 1}", "exec"), namespace)

    from tprompt import EventLog

    log = EventLog(tmp_path / "runs.db")
    try:
        statuses = {r.run_id: r.status for r in log.runs()}
    finally:
        log.close()
    # The transfer run, the own-template (open-ended) run, the run from best.json, the program's run and the run
    # with a critic.
    assert len(statuses) == 5 and set(statuses.values()) == {"completed"}, statuses
    mine = namespace["mine"]
    assert mine.best_prompt  # type: ignore[attr-defined]
    assert (tmp_path / "best.json").exists()
    from tprompt import export_prompt

    assert list(export_prompt(namespace["app"]).prompts or {}) == ["recall", "answer"]  # type: ignore[arg-type]
