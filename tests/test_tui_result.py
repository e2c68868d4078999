"""The run view shows the result (issue 33): the held-out test table on Scores, tabs by digit from every tab."""

from __future__ import annotations

from pathlib import Path

import pytest
from _tui_db import DEMO_RUN, screen_text
from conftest import run_created
from test_tui import SIZE, open_run, table, wait_for
from textual.widgets import Input, TabbedContent

from tprompt.metric_specs import heading
from tprompt.stores import EventLog
from tprompt.stores.summary import ROLE_LABELS
from tprompt.tui import create_app
from tprompt.tui.data import fmt
from tprompt.tui.screens.run import NOT_TESTED, TAB_KEYS, TABS

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_scores_tab_shows_the_held_out_test_table(recorded: Path) -> None:
    with EventLog(recorded, readonly=True) as log:
        state = log.state(DEMO_RUN)
    assert set(state.tested) == {"original", "best_source", "best_target"}
    app = create_app(recorded, cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await open_run(pilot, app, DEMO_RUN)
        await pilot.press("2")
        tested = table(app, "#tested")
        await wait_for(pilot, lambda: tested.row_count == 3)
        # one row per role, in show's order, with every metric of the run and the objective
        assert [r.key for r in tested.rows_shown] == ["original", "best source", "best target"]
        metrics = list(state.tested["original"].metrics)
        assert [str(c.label).strip() for c in tested.columns.values()] == ["prompt", *map(heading, metrics), "objective"]
        for row in tested.rows_shown:
            role = next(k for k, v in ROLE_LABELS.items() if v == row.key)
            result = state.tested[role]
            assert row.values == (row.key, *(result.metrics[m] for m in metrics), result.objective)
        text = screen_text(app)
        assert f"arc_challenge: held-out test split ({state.tested['original'].n_examples} examples)" in text
        assert fmt(state.tested["best_target"].objective) in text
        assert NOT_TESTED.split(":")[0] not in text


async def test_scores_tab_says_when_the_run_has_no_test_result(db_path: Path) -> None:
    with EventLog(db_path) as writer:
        run_id = writer.create_run(run_created("untested"), run_id="r-untested01")
    app = create_app(db_path, run_id, cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("2")
        await wait_for(pilot, lambda: app.screen.query_one(TabbedContent).active == "tab-scores")
        assert not table(app, "#tested").display
        assert " ".join(NOT_TESTED.split()[:6]) in " ".join(screen_text(app).split())


async def test_every_digit_switches_tabs_from_every_tab(recorded: Path) -> None:
    # was: from Transcripts, 5 did nothing (the search box's digit went... nowhere; the tab kept the focus)
    app = create_app(recorded, cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = await open_run(pilot, app, DEMO_RUN)
        tabs = screen.query_one(TabbedContent)
        for start_key, start_tab in TAB_KEYS.items():
            for key, tab in TAB_KEYS.items():
                await pilot.press(start_key)
                await wait_for(pilot, lambda t=start_tab: tabs.active == t)  # type: ignore[misc]
                await pilot.press(key)
                await wait_for(pilot, lambda t=tab: tabs.active == t, timeout=10)  # type: ignore[misc]


async def test_slash_searches_the_transcripts_and_the_footer_names_it(recorded: Path) -> None:
    app = create_app(recorded, cursor_blink=False)
    async with app.run_test(size=(200, 45)) as pilot:
        await pilot.pause()
        screen = await open_run(pilot, app, DEMO_RUN)
        footer = screen_text(app).splitlines()[-1]
        # one name for the tab and its key in the footer; the search key listed
        assert "4 Transcripts" in footer and "/ Search" in footer
        tab_labels = [str(t.label) for t in screen.query("ContentTab")]
        assert tab_labels == [name for _, name in TABS.values()]
        await pilot.press("slash")
        search = screen.query_one("#call-search", Input)
        await wait_for(pilot, lambda: app.focused is search)
        assert screen.query_one(TabbedContent).active == "tab-transcripts"
        calls = table(app, "#calls")
        every = calls.row_count
        await pilot.press(*"<INS>")  # typed into the box (digits too), not read as keys
        await wait_for(pilot, lambda: 0 < calls.row_count < every)
        await pilot.press("5")
        await wait_for(pilot, lambda: search.value == "<INS>5")
        await pilot.press("backspace", "escape")  # Esc leaves the box, not the run
        await wait_for(pilot, lambda: app.focused is calls)
        assert app.screen is screen
        await pilot.press("5")
        await wait_for(pilot, lambda: screen.query_one(TabbedContent).active == "tab-graph")
