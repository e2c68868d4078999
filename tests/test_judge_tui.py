"""The TUI shows the LLM judge: candidate.judged events in the run view, the judge's calls in its transcripts."""

from __future__ import annotations

from pathlib import Path

import pytest
from _tui_db import screen_text
from test_graph import run_in_process
from test_judge import JUDGED
from test_tui import keys_of, open_run, running, table, wait_for
from textual.widgets import Select

from tprompt.stores.events import Judged
from tprompt.tui.data import describe

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_the_run_view_lists_judgements_and_the_judges_transcripts(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    log, run_id = run_in_process(db, **JUDGED)
    judged = [se for se in log.events(run_id) if isinstance(se.event, Judged)]
    log.close()
    line = describe(judged[0])
    assert line.startswith(f"{judged[0].event.prompt_id} on ") and "relevance" in line and "faithfulness" in line
    async with running(db) as (app, pilot):
        screen = await open_run(pilot, app, run_id)
        events = table(app, "#events")
        await wait_for(pilot, lambda: events.row_count >= judged[-1].seq)
        assert {str(se.seq) for se in judged} <= set(keys_of(events))
        await pilot.press("4")
        await pilot.pause()
        screen.query_one("#call-agent", Select).value = "judge"
        await pilot.pause()
        calls = table(app, "#calls")
        assert calls.row_count == sum(len({j.example_id for j in se.event.judgements}) for se in judged)
        assert all(screen._calls_index[k].agent == "judge" for k in keys_of(calls))
        calls.focus()
        calls.move_cursor(row=0)
        await pilot.pause()
        text = screen_text(app)
        assert "Criteria:" in text and "relevance: " in text  # the request's rubric and the reply's scores
