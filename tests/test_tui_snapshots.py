"""Snapshots (pytest-textual-snapshot) of the main screens on the recorded database.

The database is built with fixed run ids, a fake clock, counted call ids and
the deterministic ``fake`` model; cursors do not blink. After an intended change
of the UI (or of the fake model's output) refresh them with
``pytest tests/test_tui_snapshots.py --snapshot-update`` and look at the SVGs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _tui_db import DEMO_RUN, EVIL_RUN, MARKUP_RUN, RAW

from tprompt.tui import create_app
from tprompt.tui.widgets import SortedTable

SIZE = (140, 40)


def _cursor(selector: str, row: int) -> Any:
    async def run_before(pilot: Any) -> None:
        await pilot.pause()
        pilot.app.screen.query_one(selector, SortedTable).move_cursor(row=row, animate=False)
        await pilot.pause()

    return run_before


def test_runs_browser(snap_compare: Any, recorded: Path) -> None:
    assert snap_compare(create_app(recorded, cursor_blink=False), terminal_size=SIZE)


def test_run_timeline_with_replay(snap_compare: Any, recorded: Path) -> None:
    app = create_app(recorded, DEMO_RUN, cursor_blink=False)
    assert snap_compare(app, terminal_size=SIZE, run_before=_cursor("#events", 6))


def test_run_scores(snap_compare: Any, recorded: Path) -> None:
    app = create_app(recorded, DEMO_RUN, cursor_blink=False)
    assert snap_compare(app, press=["2"], terminal_size=SIZE)


def test_run_candidates(snap_compare: Any, recorded: Path) -> None:
    app = create_app(recorded, DEMO_RUN, cursor_blink=False)
    assert snap_compare(app, press=["3"], terminal_size=SIZE)


def test_run_transcripts(snap_compare: Any, recorded: Path) -> None:
    app = create_app(recorded, DEMO_RUN, cursor_blink=False)
    assert snap_compare(app, press=["4"], terminal_size=SIZE, run_before=_cursor("#calls", 4))


def test_run_logprob_transcript(snap_compare: Any, recorded: Path) -> None:
    # a scorer's logprob call: each option's letter, text and probability, the chosen one, the gold one, right or wrong
    async def run_before(pilot: Any) -> None:
        await pilot.pause()
        await pilot.press("4")
        screen = pilot.app.screen
        calls = screen.query_one("#calls", SortedTable)
        first = next(k for k, row in screen._calls_index.items() if row.kind == "options")
        calls.show_key(first)
        await pilot.pause()
        screen.query_one("#call-box").scroll_end(animate=False)  # the options, the answer and the gold
        await pilot.pause()

    app = create_app(recorded, DEMO_RUN, cursor_blink=False)
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_fork_dialog(snap_compare: Any, recorded: Path) -> None:
    app = create_app(recorded, DEMO_RUN, cursor_blink=False)
    assert snap_compare(app, press=["2", "f"], terminal_size=SIZE)


def test_markup_run_candidates_render_literally(snap_compare: Any, recorded: Path) -> None:
    app = create_app(recorded, MARKUP_RUN, cursor_blink=False)
    assert snap_compare(app, press=["3"], terminal_size=SIZE)


# -- a run whose texts hold terminal escapes (issue 19, item 2): shown escaped, never sent raw ----

SNAPSHOTS = Path(__file__).parent / "__snapshots__" / Path(__file__).stem


def _no_raw_in_snapshot(name: str) -> None:
    svg = (SNAPSHOTS / f"{name}.svg").read_text(encoding="utf-8")
    assert not [c for c in RAW if c in svg], f"{name}.svg holds raw control characters"
    assert "\\x1b]0;pwned-title\\x07" in svg.replace("&#160;", " ")


def test_hostile_run_timeline(snap_compare: Any, hostile: Path) -> None:
    app = create_app(hostile, EVIL_RUN, cursor_blink=False)
    assert snap_compare(app, terminal_size=SIZE, run_before=_cursor("#events", 0))
    _no_raw_in_snapshot("test_hostile_run_timeline")


def test_hostile_run_transcripts(snap_compare: Any, hostile: Path) -> None:
    app = create_app(hostile, EVIL_RUN, cursor_blink=False)
    assert snap_compare(app, press=["4"], terminal_size=SIZE)
    _no_raw_in_snapshot("test_hostile_run_transcripts")


def test_hostile_run_review_dialog(snap_compare: Any, hostile: Path) -> None:
    app = create_app(hostile, EVIL_RUN, cursor_blink=False)
    assert snap_compare(app, press=["3", "v"], terminal_size=SIZE)
    _no_raw_in_snapshot("test_hostile_run_review_dialog")
