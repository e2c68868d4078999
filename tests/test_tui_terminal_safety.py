"""The terminal UI shows text from models and users, never obeys it (issue 19, item 2).

A run whose name, original prompt, proposed prompts, review candidates, task and model
names, metric name, pause reason, error and transcript (messages, response, agent,
call error) all hold OSC 0, CSI 2J, an OSC 8 link, DCS, C1 CSI/NEL, BEL, CR, backspace
and DEL, plus rich markup, is walked through every screen, tab and dialog with the pilot.
At each stop the screenshot (what the terminal is sent, as ``ui --screenshot`` saves it)
holds no control character, and the screen shows the escapes (``\\x1b``, ``\\x07``),
as the CLI does, rather than dropping them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _tui_db import EVIL, EVIL_FAILED, EVIL_RUN, RAW, evil, screen_text
from test_tui import open_run, table, wait_for
from textual.widgets import Input, Select, Static, TextArea

from tprompt._text import printable
from tprompt.stores import EventLog
from tprompt.tui import TPromptApp, create_app
from tprompt.tui.screens.modals import (
    DiffScreen,
    ForkScreen,
    NewRunScreen,
    ReviewScreen,
)

pytestmark = pytest.mark.anyio

SIZE = (200, 60)
#: How the hostile text must look on the screen: every control character escaped, markup literal.
SHOWN = printable(EVIL)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def shown(place: str) -> str:
    """The start of ``evil(place)`` as the screen must show it (up to the first space, so never wrapped)."""
    return printable(evil(place)).split(" ")[0]


def assert_no_raw(text: str, where: str) -> None:
    bad = sorted({f"\\x{ord(c):02x}" for c in text if c in RAW})
    assert not bad, f"{where}: raw control characters {bad} reach the terminal"


def check(app: TPromptApp, where: str, *places: str) -> str:
    """No raw control character in the screenshot; each place's text shown escaped. Returns the screen text."""
    assert_no_raw(app.export_screenshot(), where)
    text = screen_text(app)
    assert_no_raw(text, where)
    for place in places:
        assert shown(place) in text, f"{where}: {place!r} is not shown escaped"
    return text


def cells(app: TPromptApp, selector: str) -> list[str]:
    """Every cell of a table as the DataTable is given it (wide cells scroll out of the screenshot)."""
    out = []
    for row in table(app, selector).rows_shown:
        out += [cell.plain for cell in row.shown()]
    for text in out:
        assert_no_raw(text, selector)
    return out


def static(app: TPromptApp, selector: str) -> str:
    """All a Static holds (it may be cut to its height on the screen)."""
    text = str(app.screen.query_one(selector, Static).content)
    assert_no_raw(text, selector)
    return text


def has(texts: list[str], place: str) -> bool:
    return any(shown(place) in t for t in texts)


async def test_every_place_shows_hostile_text_escaped(hostile: Path) -> None:
    app = create_app(hostile, cursor_blink=False)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pilot.pause()
        # Runs browser: names, tasks, models.
        check(app, "runs browser", "name", "failedrun")
        runs = cells(app, "#runs-table")
        assert all(has(runs, p) for p in ("name", "failedrun", "task", "model"))
        assert "[bold]B[/bold]" in screen_text(app)  # markup in a run name stays literal

        # Window and screen titles (the header, the screenshot's <title>).
        app.sub_title = evil("appsubtitle")
        await pilot.pause()
        check(app, "app sub-title", "appsubtitle")
        app.title, app.screen.title = evil("apptitle"), evil("screentitle")
        await pilot.pause()
        check(app, "screen title", "screentitle")
        assert shown("apptitle") in app.export_screenshot()  # the SVG's window title
        app.title, app.sub_title, app.screen.title = "tprompt", "Transfer-Prompting runs", None

        # Run view, timeline: head (name, tasks, models), events, replay, payload.
        screen = await open_run(pilot, app, EVIL_RUN)
        check(app, "run head", "name", "task")
        assert has([static(app, "#run-head")], "model")
        events = cells(app, "#events")
        assert has(events, "task") and has(events, "pausereason")
        table(app, "#events").move_cursor(row=0)
        await pilot.pause()
        check(app, "replay of seq 1", "task")
        payload = screen.query_one("#payload", TextArea).text
        assert_no_raw(payload, "payload")
        assert "\\u001b]0;pwned-title\\u0007" in payload and "\\u009b1m\\u0085" in payload

        # Scores: best prompts, spend (agent), plot.
        await pilot.press("2")
        await pilot.pause()
        check(app, "scores")
        assert has([static(app, "#spend")], "agent")
        assert has(cells(app, "#best"), "proposedB")

        # Candidates: task, texts (original and proposed), a metric named by the log, the full text.
        await pilot.press("3")
        await pilot.pause()
        candidates = cells(app, "#candidates")
        assert all(has(candidates, p) for p in ("task", "original", "proposedA", "proposedB"))
        labels = [str(c.label) for c in table(app, "#candidates").columns.values()]
        assert_no_raw("".join(labels), "column labels")
        assert any(shown("metric") in label for label in labels)
        table(app, "#candidates").move_cursor(row=2)
        await pilot.pause()
        check(app, "candidate text", "proposedB")

        # Transcripts: agent filter, the calls table, messages, response, call error.
        await pilot.press("4")
        await pilot.pause()
        calls = cells(app, "#calls")
        assert has(calls, "agent") and has(calls, "model")
        check(app, "call detail", "agent", "model", "systemmessage", "usermessage", "response", "callerror")
        agent = screen.query_one("#call-agent", Select)
        agent.expanded = True
        await pilot.pause()
        check(app, "agent filter", "agent")
        agent.expanded = False
        await pilot.pause()

        # Graph tab.
        await pilot.press("5")
        await pilot.pause()
        check(app, "graph tab")

        # Diff: a call's system message (marked in Transcripts) against a candidate.
        await pilot.press("4", "m", "3")
        table(app, "#candidates").move_cursor(row=1)
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, DiffScreen))
        check(app, "diff", "agent", "systemmessage", "proposedA")
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, DiffScreen))

        # Review dialog: candidates shown escaped; an edit pasted with control characters keeps them visible.
        await pilot.press("v")
        await wait_for(pilot, lambda: isinstance(app.screen, ReviewScreen))
        dialog = app.screen
        first = dialog.query_one("#review-text-1", Input)
        assert first.value == printable(evil("review1"))
        first.cursor_position = 0
        await pilot.pause()
        check(app, "review dialog", "review1")
        edit = dialog.query_one("#review-text-2", Input)
        edit.focus()
        edit.value = ""
        edit.insert_text_at_cursor(evil("edit"))
        await pilot.pause()
        assert edit.value == printable(evil("edit")) and edit.cursor_position == len(edit.value)
        edit.cursor_position = 0
        await pilot.pause()
        check(app, "review edit", "edit")
        added = dialog.query_one("#review-add", Input)
        added.focus()
        await pilot.pause()
        added.insert_text_at_cursor("Added ")
        added.insert_text_at_cursor(evil("added"))  # as a paste does
        # The cursor lands after the visible escapes (where the user goes on typing).
        assert added.value == "Added " + printable(evil("added")) and added.cursor_position == len(added.value)
        await pilot.click("#review-ok")

        def revised() -> bool:
            with EventLog(hostile, readonly=True) as ro:
                return any(e.type == "step.revised" for e in ro.events(EVIL_RUN))

        await wait_for(pilot, revised)
        # Resuming fails on the hostile run's resources (its task, opened before its models since one object
        # opens them all): the notification says so, escaped.
        await wait_for(pilot, lambda: any("unknown task" in str(n.message) or "model:" in str(n.message)
                                          for n in app._notifications))
        check(app, "resume failed")
        await wait_for(pilot, lambda: not app.is_running_here(EVIL_RUN))

        # New-run form: a pasted task name is shown escaped, and so is the error about it.
        await pilot.press("escape")
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, NewRunScreen))
        target = app.screen.query_one("#new-target_task", Input)
        target.value = evil("newtask")
        target.cursor_position = 0
        await pilot.pause()
        check(app, "new-run form", "newtask")
        await pilot.click("#new-ok")
        # the run is checked in the form (as `tprompt run` does): the bad task is one line there
        error = app.screen.query_one("#new-error", Static)
        await wait_for(pilot, lambda: "newtask:" in str(error.render()))
        check(app, "new-run error", "newtask")
        await pilot.press("escape")

        # A failed run: its error in the head and the timeline.
        app.clear_notifications()
        app.open_run(EVIL_FAILED)
        await wait_for(pilot, lambda: getattr(app.screen, "run_id", None) == EVIL_FAILED)
        check(app, "failed run", "failedrun", "error")
        assert has(cells(app, "#events"), "error")
        # Its held-out test table: a metric name from the log, and the undefined note naming another.
        await pilot.press("2")
        tested = table(app, "#tested")
        await wait_for(pilot, lambda: tested.row_count == 1)
        assert any(shown("testmetric") in str(c.label) for c in tested.columns.values())
        assert shown("undefined") in static(app, "#tested-note")
        check(app, "test table")
        # The logprob call of that test: the option letters from the request, the answer and its unloadable task.
        await pilot.press("4")
        calls = table(app, "#calls")
        await wait_for(pilot, lambda: "call-evil-3" in [r.key for r in calls.rows_shown])
        calls.show_key("call-evil-3")
        await wait_for(pilot, lambda: static(app, "#call-detail").startswith("call call-evil-3"))
        detail = static(app, "#call-detail")
        for place in ("letter", "question", "parsed", "example", "task"):
            assert shown(place) in detail, place
        check(app, "logprob call", "letter")
        await pilot.press("1")

        # Fork dialog: source prompts offered, the target task prefilled; forking onto it fails, said escaped.
        await pilot.press("f")
        await wait_for(pilot, lambda: isinstance(app.screen, ForkScreen))
        point = app.screen.query_one("#fork-point", Select)
        point.expanded = True
        await pilot.pause()
        check(app, "fork dialog", "proposedA")
        point.expanded = False
        assert app.screen.query_one("#fork-target", Input).value == printable(evil("task"))
        await pilot.click("#fork-ok")
        await wait_for(pilot, lambda: not isinstance(app.screen, ForkScreen) and bool(app._notifications))
        await wait_for(pilot, lambda: any("task:" in str(n.message) for n in app._notifications))
        check(app, "fork error notification", "task")

    with EventLog(hostile, readonly=True) as log:
        (revised_event,) = [e.event for e in log.events(EVIL_RUN) if e.type == "step.revised"]
    # The kept candidate is unchanged (control characters and all); the edit is what the user saw.
    assert [c.text for c in revised_event.candidates] == [evil("review1"), printable(evil("edit")),
                                                          "Added " + printable(evil("added"))]


async def test_the_notification_sink_escapes_and_reads_no_markup(hostile: Path) -> None:
    app = create_app(hostile, cursor_blink=False)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pilot.pause()
        app.screen.notify(evil("toast") + " [@click=app.quit]q[/]", title=evil("toasttitle"))
        await wait_for(pilot, lambda: "toast" in screen_text(app))
        text = check(app, "notification", "toast", "toasttitle")
        assert "[@click=app.quit]q[/]" in text and app.is_running


def test_ui_screenshot_command_sends_no_control_character(hostile: Path, tmp_path: Path) -> None:
    """``tprompt ui --screenshot`` on every tab of the hostile run and on the runs browser: no raw byte in the SVG."""
    from test_graph import tprompt

    shots = {"runs": ("ui", "--screenshot")}
    for key in ("1", "2", "3", "4", "5"):
        shots[f"tab{key}"] = ("ui", EVIL_RUN, "--key", key, "--screenshot")
    shots["failed"] = ("ui", EVIL_FAILED, "--screenshot")
    for name, args in shots.items():
        out = tmp_path / f"{name}.svg"
        proc = tprompt(hostile, *args, str(out), "--size", "160x45")
        svg = out.read_text(encoding="utf-8")
        assert svg.startswith("<svg")
        assert_no_raw(svg, f"ui --screenshot ({name})")
        assert_no_raw(proc.stdout + proc.stderr, f"ui --screenshot ({name}) output")
        assert "\\x1b]0;pwned-title\\x07" in svg.replace("&#160;", " "), name
