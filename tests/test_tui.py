"""Pilot tests of the terminal UI against recorded databases (fake model, fixed ids)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from _tui_db import DEMO_RUN, FORK_RUN, MARKUP_PROMPT, MARKUP_RUN, screen_text
from conftest import run_created
from textual.widgets import Checkbox, Input, Select, TextArea

from tprompt.stores import EventLog, PromptCandidate, prompt_id_of
from tprompt.stores.control import pause_requested
from tprompt.stores.events import CandidateScored, StageStarted, StepProposed
from tprompt.stores.projection import ScoredPrompt
from tprompt.tui import TPromptApp, create_app
from tprompt.tui.screens.modals import DiffScreen, ForkScreen, NewRunScreen
from tprompt.tui.screens.run import RunScreen
from tprompt.tui.screens.runs import RunsScreen
from tprompt.tui.widgets import LiteralStatic, SortedTable

SIZE = (150, 45)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def wait_for(pilot: Any, condition: Callable[[], bool], timeout: float = 120.0) -> None:
    """Let the app run until ``condition()`` holds; ``timeout`` only bounds a hang."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("timed out waiting for the UI")
        await pilot.pause(0.05)
    # A screen that just became current may not have mounted its children yet.
    await pilot.pause()


def table(app: TPromptApp, selector: str) -> SortedTable:
    return app.screen.query_one(selector, SortedTable)


def keys_of(t: SortedTable) -> list[str]:
    return [r.key for r in t.rows_shown]


@contextlib.asynccontextmanager
async def running(db: Path, run_id: str | None = None, **options: Any) -> AsyncIterator[tuple[TPromptApp, Any]]:
    """The app on ``db`` (opened on ``run_id`` if given) and the pilot driving it (no cursor blink, the suite's
    size), its first screen mounted."""
    app = create_app(db, run_id, cursor_blink=False, **options)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        yield app, pilot


async def candidate_boxes(pilot: Any, app: TPromptApp, run_id: str, n: int) -> list[tuple[ScoredPrompt, str]]:
    """Open run ``run_id``'s Candidates tab (``n`` rows) and select each row in turn, top to bottom: its score and
    the text its box then shows."""
    screen = await open_run(pilot, app, run_id)
    await pilot.press("3")
    candidates = table(app, "#candidates")
    await wait_for(pilot, lambda: candidates.row_count == n)
    candidates.focus()
    boxes = []
    for row, key in enumerate(keys_of(candidates)):
        candidates.move_cursor(row=row)
        await pilot.pause()
        score = next(s for s in screen.follower.state.scores if str(s.seq) == key)
        boxes.append((score, str(screen.query_one("#candidate-text", LiteralStatic).render())))
    return boxes


async def open_run(pilot: Any, app: TPromptApp, run_id: str) -> RunScreen:
    runs = table(app, "#runs-table")
    runs.move_cursor(row=runs.get_row_index(run_id))
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
    await pilot.pause()
    screen = app.screen
    assert isinstance(screen, RunScreen) and screen.run_id == run_id
    return screen


async def test_browser_to_run_to_event_to_transcript(recorded: Path) -> None:
    async with running(recorded) as (app, pilot):
        runs = table(app, "#runs-table")
        assert sorted(keys_of(runs)) == sorted([DEMO_RUN, FORK_RUN, MARKUP_RUN])
        # filter: only the fork mentions college_biology
        await pilot.press("slash")
        await pilot.press(*"biology")
        assert keys_of(runs) == [FORK_RUN]
        await pilot.press("escape")
        assert len(keys_of(runs)) == 3

        screen = await open_run(pilot, app, DEMO_RUN)
        events = table(app, "#events")
        with EventLog(recorded, readonly=True) as log:
            n_events = log.last_seq(DEMO_RUN)
        assert events.row_count == n_events
        # select the 5th event (the evaluator's first score): its payload and the state replayed to it
        events.focus()
        events.move_cursor(row=0)
        await pilot.press("down", "down", "down", "down")
        await pilot.pause()
        assert events.current_key() == "5"
        payload = app.screen.query_one("#payload", TextArea).text
        assert '"seq": 5' in payload and '"type": "candidate.scored"' in payload
        text = screen_text(app)
        assert "state after seq 5" in text
        with EventLog(recorded, readonly=True) as log:
            at4 = log.state(DEMO_RUN, upto=5)
        assert f"events: {at4.last_seq}" in text and at4.status in text

        # transcripts: every call, filter by agent, search in the text
        await pilot.press("4")
        await pilot.pause()
        calls = table(app, "#calls")
        all_calls = calls.row_count
        assert all_calls > 0
        screen.query_one("#call-agent", Select).value = "proposer"
        await pilot.pause()
        proposer_calls = calls.row_count
        assert 0 < proposer_calls < all_calls
        assert all(screen._calls_index[k].agent == "proposer" for k in keys_of(calls))
        assert "[system]" in screen_text(app) or "[user]" in screen_text(app)
        screen.query_one("#call-agent", Select).clear()
        screen.query_one("#call-step", Select).value = "source:1"
        await pilot.pause()
        assert {screen._calls_index[k].step for k in keys_of(calls)} == {"source:1"}
        screen.query_one("#call-step", Select).clear()
        screen.query_one("#call-search", Input).value = "<INS>"
        await pilot.pause()
        found = calls.row_count
        assert 0 < found < all_calls
        screen.query_one("#call-search", Input).value = "no such text anywhere 12345"
        await pilot.pause()
        assert calls.row_count == 0
        assert "no call matches the filter" in screen_text(app)

        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)


async def test_sorting_tables(recorded: Path) -> None:
    async with running(recorded) as (app, pilot):
        runs = table(app, "#runs-table")
        runs.sort_by(0, reverse=False)
        await pilot.pause()
        assert keys_of(runs) == sorted([DEMO_RUN, FORK_RUN, MARKUP_RUN])
        await pilot.press("S")  # flip
        assert keys_of(runs) == sorted([DEMO_RUN, FORK_RUN, MARKUP_RUN], reverse=True)
        await open_run(pilot, app, DEMO_RUN)
        await pilot.press("3")
        cands = table(app, "#candidates")
        objective_col = cands._labels.index("objective")
        cands.sort_by(objective_col, reverse=True)
        await pilot.pause()
        values = [r.values[objective_col] for r in cands.rows_shown]
        assert values == sorted(values, reverse=True) and len(values) > 3
        step_col = cands._labels.index("step")
        cands.sort_by(step_col)
        steps = [r.values[step_col] for r in cands.rows_shown]
        assert steps == sorted(steps)


async def fork_best_source_prompt(pilot: Any, app: TPromptApp, run_id: str) -> ForkScreen:
    """Open ``run_id``, select the first row of its best-prompts tab (its best source prompt), press f: the fork
    dialog, forking from that prompt."""
    await open_run(pilot, app, run_id)
    await pilot.press("2")
    table(app, "#best").move_cursor(row=0)
    await pilot.press("f")
    await wait_for(pilot, lambda: isinstance(app.screen, ForkScreen))
    assert isinstance(app.screen, ForkScreen)
    return app.screen


async def fork_onto(pilot: Any, app: TPromptApp, modal: ForkScreen, target: str) -> str:
    """Fork onto ``target`` from the fork dialog ``modal``; the fork's id, once the app's workers are done."""
    parent = modal.run_id
    modal.query_one("#fork-target", Input).value = target
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.run_id != parent)
    new_id = app.screen.run_id
    await app.workers.wait_for_complete()
    return new_id


async def test_fork_from_ui_opens_the_new_run(recorded: Path) -> None:
    async with running(recorded, poll_interval=0.1) as (app, pilot):
        with EventLog(recorded, readonly=True) as log:
            best = log.state(DEMO_RUN).best("source")
        assert best is not None
        modal = await fork_best_source_prompt(pilot, app, DEMO_RUN)
        assert modal.query_one("#fork-point", Select).value == best.prompt_id
        new_id = await fork_onto(pilot, app, modal, "bbh/causal_judgement")
        with EventLog(recorded, readonly=True) as log:
            state = log.state(new_id)
        assert state.parent_run_id == DEMO_RUN
        assert state.from_prompt_id == best.prompt_id
        assert state.target_task == "bbh/causal_judgement"
        assert state.status == "completed"
        # the new run's view follows it to the end without a restart
        await wait_for(pilot, lambda: app.screen.follower.state.status == "completed")
        assert "completed" in screen_text(app)
        # and the runs browser lists it
        await pilot.press("escape")
        await wait_for(pilot, lambda: new_id in keys_of(table(app, "#runs-table")))


async def test_fork_at_selected_event(recorded: Path) -> None:
    async with running(recorded) as (app, pilot):
        await open_run(pilot, app, DEMO_RUN)
        events = table(app, "#events")
        # On a loaded machine the timeline may still be filling: wait for seq 6.
        await wait_for(pilot, lambda: events.row_count >= 6)
        events.move_cursor(row=5)  # seq 6
        await pilot.pause()
        await pilot.press("f")
        await wait_for(pilot, lambda: isinstance(app.screen, ForkScreen))
        assert app.screen.query_one("#fork-point", Select).value == "seq"
        app.screen.query_one("#fork-start", Checkbox).value = False
        app.screen.query_one("#fork-target", Input).value = "bbh/navigate"
        await pilot.click("#fork-ok")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.run_id != DEMO_RUN)
        await app.workers.wait_for_complete()
        with EventLog(recorded, readonly=True) as log:
            row = log.run(app.screen.run_id)
        assert (row.parent_run_id, row.parent_seq, row.status) == (DEMO_RUN, 6, "created")


async def test_fork_errors_are_shown_not_raised(recorded: Path) -> None:
    async with running(recorded) as (app, pilot):
        await open_run(pilot, app, DEMO_RUN)
        await pilot.press("f")
        await wait_for(pilot, lambda: isinstance(app.screen, ForkScreen))
        app.screen.query_one("#fork-target", Input).value = "no/such_task"
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, RunScreen) and app.screen.run_id == DEMO_RUN
        assert any("no/such_task" in str(n.message) for n in app._notifications)
        with EventLog(recorded, readonly=True) as log:
            assert len(log.runs()) == 3


async def test_live_events_appear_without_restart(db_path: Path) -> None:
    with EventLog(db_path) as writer:
        first = writer.create_run(run_created("live"), run_id="r-live000001")
    async with running(db_path, poll_interval=0.05) as (app, pilot):
        assert keys_of(table(app, "#runs-table")) == [first]
        # another process creates a run: the browser shows it
        with EventLog(db_path) as writer:
            writer.create_run(run_created("second"), run_id="r-live000002")
        await wait_for(pilot, lambda: len(keys_of(table(app, "#runs-table"))) == 2)

        await open_run(pilot, app, first)
        assert table(app, "#events").row_count == 1
        text = "Think step by step."
        cand = PromptCandidate(prompt_id=prompt_id_of(text), text=text)
        with EventLog(db_path) as writer:
            writer.append(first, [StageStarted(stage="source", tasks=["source"])])
            writer.append(first, [StepProposed(stage="source", step=1, candidates=[cand])])
        await wait_for(pilot, lambda: table(app, "#events").row_count == 3)
        # the cursor was on the last event, so it follows the tail
        assert table(app, "#events").current_key() == "3"
        with EventLog(db_path) as writer:
            writer.append(
                first,
                [
                    CandidateScored(
                        stage="source", step=1, prompt_id=cand.prompt_id, text=text, task="source",
                        n_examples=4, metrics={"accuracy": 0.75, "ifr": 1.0}, objective=0.6,
                    )
                ],
            )
        await wait_for(pilot, lambda: table(app, "#candidates").row_count == 1)
        assert "running" in screen_text(app)
        await pilot.press("2")
        await pilot.pause()
        assert "0.600" in screen_text(app)


async def test_new_run_form_runs_in_a_worker_and_dashboard_follows(db_path: Path) -> None:
    async with running(db_path, poll_interval=0.05) as (app, pilot):
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, NewRunScreen))
        form = app.screen
        fields = {
            "name": "from the form", "source_tasks": "bbh/navigate", "target_task": "bbh/web_of_lies",
            "proposer": "fake", "scorer": "fake", "steps": "1", "candidates": "2", "top_k": "1",
            "examples": "3", "test_examples": "3",
        }
        # a bad value first: the form says why and stays open
        form.query_one("#new-steps", Input).value = "0"
        await pilot.click("#new-ok")
        await wait_for(pilot, lambda: "new run: steps" in screen_text(app))
        assert isinstance(app.screen, NewRunScreen)
        for key, value in fields.items():
            form.query_one(f"#new-{key}", Input).value = value
        form.query_one("#new-mode", Select).value = "generate"
        await pilot.pause(0.3)  # a Button ignores a second click within its 0.2 s press effect
        await pilot.click("#new-ok")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
        screen = app.screen
        await wait_for(pilot, lambda: screen.follower.state.status == "completed")
        await app.workers.wait_for_complete()
        state = screen.follower.state
        assert state.name == "from the form" and state.config.steps == 1
        assert table(app, "#candidates").row_count == len(state.scores) > 0
        assert table(app, "#events").row_count == state.last_seq
        # the calls were appended while the run ran: the table has every one, numbered in order
        with EventLog(db_path, readonly=True) as log:
            n_calls = log._conn.execute("SELECT count(*) FROM transcripts WHERE run_id = ?", (state.run_id,)).fetchone()[0]
        await pilot.press("4")
        await wait_for(pilot, lambda: table(app, "#calls").row_count == n_calls > 0)
        assert [r.values[0] for r in table(app, "#calls").rows_shown] == list(range(1, n_calls + 1))


async def test_new_run_form_without_source_tasks_is_target_only(db_path: Path) -> None:
    # was: an empty source field kept the default ai2_science source stage (issue 29)
    async with running(db_path, poll_interval=0.05) as (app, pilot):
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, NewRunScreen))
        form = app.screen
        assert form.values()["source_tasks"] == ["ai2_science"]  # the prefilled demo transfers
        form.query_one("#new-source_tasks", Input).value = ""
        form.query_one("#new-target_task", Input).value = "bbh/web_of_lies"
        values = form.values()
        assert values["transfer"] is False and values["source_tasks"] == []


async def test_pause_and_resume_a_run_started_here(db_path: Path) -> None:
    async with running(db_path, poll_interval=0.05) as (app, pilot):
        values = {
            # slow enough that the run is still going when "p" is pressed, even on a loaded machine
            "source_tasks": ["bbh/navigate"], "target_task": "bbh/web_of_lies", "proposer": "fake:delay=0.2",
            "scorer": "fake:delay=0.2", "steps": 2, "candidates": 2, "top_k": 1, "examples": 4,
            "test_examples": 3, "mode": "generate",
        }
        app.start_new_run(values)
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
        screen = app.screen
        await wait_for(pilot, lambda: app.is_running_here(screen.run_id))
        await pilot.press("p")
        await wait_for(pilot, lambda: screen.follower.state.status == "paused")
        await app.workers.wait_for_complete()
        assert not app.is_running_here(screen.run_id)
        paused_at = screen.follower.state.last_seq
        await pilot.press("r")
        await wait_for(pilot, lambda: screen.follower.state.status == "completed")
        await app.workers.wait_for_complete()
        types = [se.type for se in screen.follower.events]
        assert "run.paused" in types and "run.resumed" in types
        assert screen.follower.state.last_seq > paused_at


async def test_pause_of_a_run_in_another_process_is_a_request(db_path: Path) -> None:
    with EventLog(db_path) as writer:
        run_id = writer.create_run(run_created("elsewhere"), run_id="r-else000001")
        writer.append(run_id, [StageStarted(stage="source", tasks=["source"])])
    app = create_app(db_path, run_id, cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
        await pilot.press("p")
        await pilot.pause()
    with EventLog(db_path) as log:
        assert pause_requested(log, run_id)


async def test_markup_in_prompts_and_answers_renders_literally(recorded: Path) -> None:
    app = create_app(recorded, cursor_blink=False)
    async with app.run_test(size=(200, 50)) as pilot:
        await pilot.pause()
        assert "[b]markup[/b]" in screen_text(app)  # run name in the browser
        await open_run(pilot, app, MARKUP_RUN)
        assert "[b]markup[/b]" in screen_text(app)  # run head
        await pilot.press("3")
        cands = table(app, "#candidates")
        cands.move_cursor(row=0)  # step 0: the original prompt
        await pilot.pause()
        assert MARKUP_PROMPT in screen_text(app)  # full candidate text
        # diff the markup prompt against another one: still literal
        await pilot.press("m")
        cands.move_cursor(row=1)
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, DiffScreen))
        shown = screen_text(app)
        assert "-" + MARKUP_PROMPT in shown
        await pilot.press("escape")
        await pilot.press("4")
        calls = table(app, "#calls")
        first_scorer = next(k for k in keys_of(calls) if app.screen._calls_index[k].agent == "scorer")
        calls.move_cursor(row=calls.get_row_index(first_scorer))
        await pilot.pause()
        assert MARKUP_PROMPT in screen_text(app)  # the system message of a scorer call
        # a search for a markup fragment is literal too (no regex, no markup)
        app.screen.query_one("#call-search", Input).value = "[/]"
        await pilot.pause()
        assert calls.row_count > 0


async def test_markup_in_model_answers_and_errors(db_path: Path) -> None:
    """Text written straight into the log (as a model could) never styles or crashes the UI."""
    nasty = "[/] [bold red]boom[/ [link=file:///etc/passwd]x[/link] [@click=app.quit]q[/]"
    with EventLog(db_path) as writer:
        run_id = writer.create_run(run_created(nasty), run_id="r-nasty00001")
        cand = PromptCandidate(prompt_id=prompt_id_of(nasty), text=nasty)
        writer.append(run_id, [StageStarted(stage="source", tasks=[nasty])])
        writer.append(run_id, [StepProposed(stage="source", step=0, candidates=[cand])])
        writer.append(
            run_id,
            [CandidateScored(stage="source", step=0, prompt_id=cand.prompt_id, text=nasty, task=nasty,
                             n_examples=1, metrics={"accuracy": 1.0}, objective=1.0)],
        )
    app = create_app(db_path, cursor_blink=False)
    async with app.run_test(size=(220, 50)) as pilot:
        await pilot.pause()
        await open_run(pilot, app, run_id)
        for tab in ("1", "2", "3", "4"):
            await pilot.press(tab)
            await pilot.pause()
        await pilot.press("3")
        await pilot.pause()
        assert nasty in screen_text(app)
        assert app.is_running  # the [@click=app.quit] did nothing


async def test_screenshot_command(recorded: Path, tmp_path: Path) -> None:
    from tprompt.cli import main

    out = tmp_path / "shot.svg"
    code = await asyncio.to_thread(
        main, ["--db", str(recorded), "ui", DEMO_RUN, "--screenshot", str(out), "--size", "120x35", "--key", "2"]
    )
    assert code == 0
    svg = out.read_text()
    assert svg.startswith("<svg") and "objective" in svg and DEMO_RUN in svg


def test_ui_command_unknown_run_is_one_line_error(recorded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tprompt.cli import main

    code = main(["--db", str(recorded), "ui", "r-nope"])
    assert code != 0
    assert "no run 'r-nope'" in capsys.readouterr().err


def test_create_app_makes_a_missing_database(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    app = create_app(path)
    assert path.exists() and app.store.readonly and app.store.runs() == []
    app.store.close()


async def test_quitting_pauses_runs_started_here(db_path: Path) -> None:
    async with running(db_path, poll_interval=0.05) as (app, pilot):
        app.start_new_run(
            {
                "source_tasks": ["ai2_science"], "target_task": "arc_challenge", "proposer": "fake:delay=0.05",
                "scorer": "fake:delay=0.05", "steps": 3, "candidates": 3, "examples": 8, "mode": "generate",
            }
        )
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.is_running_here(app.screen.run_id))
        run_id = app.screen.run_id
        await pilot.press("q")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120  # bounds a hang only
    with EventLog(db_path, readonly=True) as log:
        while log.run(run_id).status != "paused":
            assert loop.time() < deadline, "the run was not paused on quit"
            await asyncio.sleep(0.05)
        assert log.state(run_id).status == "paused"


async def test_a_run_in_another_process_shows_up_live(db_path: Path) -> None:
    import subprocess
    import sys

    EventLog(db_path).close()
    async with running(db_path, poll_interval=0.05) as (app, pilot):
        assert table(app, "#runs-table").row_count == 0
        proc = subprocess.Popen(
            [sys.executable, "-m", "tprompt.cli", "--db", str(db_path), "run", "--source", "ai2_science",
             "--target", "arc_challenge", "--model", "fake:delay=0.01", "--steps", "2", "--examples", "4",
             "--test-examples", "4", "--json"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        try:
            await wait_for(pilot, lambda: table(app, "#runs-table").row_count == 1)
            runs = table(app, "#runs-table")
            runs.move_cursor(row=0)
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
            screen = app.screen
            seen_at_open = screen.follower.state.last_seq
            await wait_for(pilot, lambda: screen.follower.state.status == "completed", timeout=120)
            assert table(app, "#events").row_count == screen.follower.state.last_seq >= seen_at_open
        finally:
            _, stderr = await asyncio.to_thread(proc.communicate, timeout=120)
        assert proc.returncode == 0, stderr.decode()
        await pilot.press("escape")
        await wait_for(pilot, lambda: "completed" in screen_text(app))


async def test_resuming_a_run_marked_running_needs_a_second_press(db_path: Path) -> None:
    # A run left "running" by a killed process (or running elsewhere): r warns first, r again resumes.
    from tprompt.graph import create_run, make_config

    with EventLog(db_path) as writer:
        run_id = create_run(
            writer,
            make_config({"source_tasks": ["ai2_science"], "target_task": "arc_challenge", "proposer": "fake",
                         "scorer": "fake", "steps": 1, "candidates": 1, "top_k": 1, "examples": 2,
                         "test_examples": 2}),
            run_id="r-kill000002",
        )
        writer.append(run_id, [StageStarted(stage="source", tasks=["ai2_science"])])
    app = create_app(db_path, run_id, cursor_blink=False, poll_interval=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
        await pilot.press("r")
        await pilot.pause()
        assert not app.is_running_here(run_id)
        assert any("press r again" in str(n.message) for n in app._notifications)
        with EventLog(db_path, readonly=True) as log:
            assert log.last_seq(run_id) == 2  # nothing written yet
        await pilot.press("r")
        await wait_for(pilot, lambda: app.screen.follower.state.status == "completed")
        await app.workers.wait_for_complete()
        assert "run.resumed" in [se.type for se in app.screen.follower.events]


async def test_a_damaged_event_is_reported_not_fatal(db_path: Path) -> None:
    with EventLog(db_path) as writer:
        good = writer.create_run(run_created("good"), run_id="r-good000001")
        bad = writer.create_run(run_created("bad"), run_id="r-bad0000001")
        writer.append(bad, [StageStarted(stage="source", tasks=["source"])])
        # a row no tprompt would write: the payload is not a valid event
        writer._conn.execute(
            "INSERT INTO events (run_id, seq, event_id, type, schema_version, payload, created_at)"
            " VALUES (?, 3, 'broken', 'candidate.scored', 1, '{\"type\": \"candidate.scored\"}', '2026-01-01')",
            (bad,),
        )
    async with running(db_path, poll_interval=0.05) as (app, pilot):
        runs = table(app, "#runs-table")
        assert sorted(keys_of(runs)) == sorted([good, bad])
        assert "unreadable" in screen_text(app)
        await open_run(pilot, app, bad)
        # the events before the damaged one are shown, and why it stops there
        assert table(app, "#events").row_count == 2
        assert "seq 3" in screen_text(app) and "invalid" in screen_text(app)
        await pilot.press("escape")
        await open_run(pilot, app, good)
        assert table(app, "#events").row_count == 1


async def test_graph_tab_highlights_the_node_of_the_selected_event(recorded: Path) -> None:
    async with running(recorded) as (app, pilot):
        await open_run(pilot, app, DEMO_RUN)
        events = table(app, "#events")
        with EventLog(recorded, readonly=True) as log:
            seqs = {e.type: e.seq for e in reversed(list(log.events(DEMO_RUN)))}  # first of each type
        for event_type, node in (("candidate.scored", "evaluate"), ("step.proposed", "start_source"),
                                 ("candidate.answered", "score"), ("transfer.selected", "transfer")):
            events.focus()
            events.move_cursor(row=seqs[event_type] - 1)
            await pilot.press("5")
            await pilot.pause()
            text = str(app.screen.query_one("#graph-view").render())
            marked = [line for line in text.splitlines() if line.startswith("▶")]
            assert len(marked) == 1 and marked[0].split()[1] == node, (event_type, marked)
            assert f"seq {seqs[event_type]}" in marked[0]
            assert any(line.split()[:1] == ["close_step"] and line.endswith("→ propose | transfer | test") for line in text.splitlines())


async def test_review_dialog_records_the_decision_and_resumes(tmp_path: Path) -> None:
    from test_graph import SMALL

    from tprompt.graph import Runner, create_run, make_config

    db = tmp_path / "t.db"
    with EventLog(db) as log:
        run_id = create_run(log, make_config({**SMALL, "steps": 1, "top_k": 1, "review": True}))
        state = Runner(log, run_id).run()
    assert state.status == "paused" and state.awaiting_review()
    texts = [c.text for c in state.pending]
    async with running(db) as (app, pilot):
        await open_run(pilot, app, run_id)
        assert "press v" in screen_text(app)
        await pilot.press("v")
        await pilot.pause()
        dialog = app.screen
        dialog.query_one("#review-keep-1", Checkbox).value = False
        dialog.query_one("#review-text-2", Input).value = "Edited: answer with the letter."
        dialog.query_one("#review-add", Input).value = "Added: think, then answer."
        await pilot.click("#review-ok")

        def reviewed_and_paused_again() -> bool:
            with EventLog(db, readonly=True) as ro:
                s = ro.state(run_id)
            return s.stage == "target" and s.status == "paused" and not app.is_running_here(run_id)

        await wait_for(pilot, reviewed_and_paused_again)
    with EventLog(db, readonly=True) as log:
        (revised,) = [e.event for e in log.events(run_id) if e.type == "step.revised"]
        scored = {e.event.text for e in log.events(run_id) if e.type == "candidate.scored"
                  and e.event.stage == "source" and e.event.step == 1}
    kept = [c.text for c in revised.candidates]
    assert len(texts) >= 2
    assert kept == ["Edited: answer with the letter.", *texts[2:], "Added: think, then answer."]
    assert scored == set(kept)


async def test_a_long_run_shows_a_window_of_its_events(recorded: Path, monkeypatch) -> None:
    """Tables hold a window of rows; the cursor reaches every row by sliding it (issue 13)."""
    monkeypatch.setattr(SortedTable, "WINDOW", 12)
    with EventLog(recorded, readonly=True) as log:
        n_events = log.last_seq(DEMO_RUN)
    assert n_events > 2 * 12
    async with running(recorded) as (app, pilot):
        await open_run(pilot, app, DEMO_RUN)
        events = table(app, "#events")
        assert events.row_count == 12 and events.total_rows == n_events
        assert [r.key for r in events.rows_shown] == [str(s) for s in range(1, n_events + 1)]
        events.focus()
        await pilot.press("ctrl+end")
        await pilot.pause()
        assert events.current_key() == str(n_events) and events.at_end()
        assert events.border_subtitle == f"rows {n_events - 11}-{n_events} of {n_events}"
        await pilot.press("ctrl+home")
        await pilot.pause()
        assert events.current_key() == "1"
        # Walking down past the window's edge slides it: every seq comes under the cursor in turn.
        seen = ["1"]
        for _ in range(n_events - 1):
            await pilot.press("down")
            seen.append(events.current_key())
        assert seen == [str(s) for s in range(1, n_events + 1)]
        assert "state after seq" in screen_text(app)
        # Sorting works over every row, not the window's only.
        events.sort_by(0, reverse=True)
        await pilot.pause()
        assert events.rows_shown[0].key == str(n_events) and events.row_count == 12
