"""The TUI shows a program run's prompt sets (issue 31): the Candidates tab's box lists every named prompt of the
candidate's set with the one its step rewrote marked, and the Scores tab's best prompts name each prompt."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from test_tui import candidate_boxes, running, table, wait_for

from tprompt import optimize
from tprompt.stores import EventLog
from tprompt.stores.events import StepProposed

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "program"
NAMES = ("summarize", "answer")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_the_candidates_box_and_the_best_prompts_list_every_prompt_of_the_set(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    where = tmp_path / "example"
    shutil.copytree(EXAMPLE, where, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.chdir(where)
    monkeypatch.delitem(sys.modules, "pubmed", raising=False)
    db = tmp_path / "p.db"
    state = optimize(db, target="pubmedqa.jsonl", model="fake", program="pubmed:run", steps=2, candidates=2,
                     examples=4, test_examples=4)
    with EventLog(db) as log:
        sets = {c.prompt_id: c for se in log.events(state.run_id) if isinstance(se.event, StepProposed)
                for c in se.event.candidates}
    assert {c.changed for c in sets.values()} == {None, *NAMES}
    async with running(db) as (app, pilot):
        marked = set()
        for s, box in await candidate_boxes(pilot, app, state.run_id, len(state.scores)):
            c = sets[s.prompt_id]
            assert c.prompts is not None
            for name in NAMES:  # every prompt under its name, with its text
                assert f"[{name}]" in box and c.prompts[name] in box
            assert s.text not in box  # not the set's JSON
            assert box.count("* rewritten in this step") == (c.changed is not None)
            if c.changed is not None:
                assert f"[{c.changed}]  * rewritten in this step" in box
                marked.add(c.changed)
        assert marked == set(NAMES)
        await pilot.press("2")
        best = table(app, "#best")
        await wait_for(pilot, lambda: best.row_count > 0)
        for r in best.rows_shown:
            cells = r.cells() if callable(r.cells) else r.cells
            line = str(cells[-1])
            c = sets[r.key.split("|")[1]]
            shown = [f"[{n}{'*' if n == c.changed else ''}]" for n in NAMES]
            assert all(s in line for s in shown), line
