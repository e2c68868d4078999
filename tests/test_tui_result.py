"""The run view shows the result (issue 33): the test table on Scores, tabs by digit, the search key, answers with their gold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _tui_db import DEMO_RUN, screen_text
from conftest import run_created
from test_graph import run_in_process
from test_judge import JUDGED
from test_tui import open_run, running, table, wait_for
from textual.widgets import Checkbox, Input, TabbedContent

from tprompt.evaluator import load_task
from tprompt.metric_specs import heading
from tprompt.stores import EventLog
from tprompt.stores.events import Answered, CandidateAnswered, CandidateJudged
from tprompt.stores.summary import ROLE_LABELS
from tprompt.tui import create_app
from tprompt.tui.data import fmt
from tprompt.tui.screens.modals import NewRunScreen
from tprompt.tui.screens.run import NOT_TESTED, TAB_KEYS, TABS, RunScreen
from tprompt.tui.screens.runs import RunsScreen
from tprompt.tui.widgets import LiteralStatic

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_scores_tab_shows_the_held_out_test_table(recorded: Path) -> None:
    with EventLog(recorded, readonly=True) as log:
        state = log.state(DEMO_RUN)
    assert set(state.tested) == {"original", "best_source", "best_target"}
    async with running(recorded) as (app, pilot):
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
    async with running(db_path, run_id) as (app, pilot):
        await pilot.press("2")
        await wait_for(pilot, lambda: app.screen.query_one(TabbedContent).active == "tab-scores")
        assert not table(app, "#tested").display
        assert " ".join(NOT_TESTED.split()[:6]) in " ".join(screen_text(app).split())


async def test_every_digit_switches_tabs_from_every_tab(recorded: Path) -> None:
    # was: from Transcripts, 5 did nothing (the search box's digit went... nowhere; the tab kept the focus)
    async with running(recorded) as (app, pilot):
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


# -- a call with the answer it became (logprob letters and gold; judge rationales beside answer and reference) --


def _answers(log: EventLog, run_id: str) -> list[tuple[Any, Any]]:
    return [(se.event, a) for se in log.events(run_id) if isinstance(se.event, Answered) for a in se.event.answers]


async def _open_call(pilot: Any, app: Any, call_id: str) -> str:
    screen = app.screen
    await pilot.press("4")
    calls = table(app, "#calls")
    await wait_for(pilot, lambda: calls.row_count > 0)
    calls.focus()
    calls.show_key(call_id)
    box = screen.query_one("#call-detail", LiteralStatic)
    await wait_for(pilot, lambda: str(box.render()).startswith(f"call {call_id}"))
    return str(box.render())  # all of it: the screen shows the part that fits


async def test_a_logprob_call_shows_option_letters_the_gold_answer_and_right_or_wrong(recorded: Path) -> None:
    with EventLog(recorded, readonly=True) as log:
        answers = [(ev, a) for ev, a in _answers(log, DEMO_RUN) if ev.mode == "logprob" and a.call_id]
        task = load_task(answers[0][0].task)
    # one right and one wrong answer of the run, each opened from its call
    picks = [next((ev, a) for ev, a in answers if a.correct), next((ev, a) for ev, a in answers if not a.correct)]
    app = create_app(recorded, DEMO_RUN, cursor_blink=False)
    async with app.run_test(size=(150, 80)) as pilot:
        await pilot.pause()
        for _, answer in picks:
            text = await _open_call(pilot, app, answer.call_id)
            example = next(e for e in task.train if e.id == answer.example_id)
            lines = [line.strip() for line in text.splitlines()]
            assert "[response: each option's probability]" in lines
            letters = [line for line in lines if line[:1] in "▶" + "ABCD" and "  " in line and line.split()[0] in "▶ABCD"]
            assert len(letters) == len(example.choices)
            chosen = [line for line in letters if line.startswith("▶")]
            assert len(chosen) == 1 and chosen[0].split()[1] == answer.parsed
            assert f"{fmt(answer.confidence)}  {example.choices[ord(answer.parsed) - 65]}" in chosen[0]
            gold = [line for line in letters if line.endswith("✓ gold")]
            assert len(gold) == 1 and gold[0].lstrip("▶ ").startswith(example.answer + " ")
            verdict = "right" if answer.correct else "wrong"
            assert f"chose {answer.parsed} (p={fmt(answer.confidence)}): {verdict}" in lines
            assert f"gold {example.answer}) {example.choices[ord(example.answer) - 65]}" in lines


async def test_judge_rationales_sit_beside_the_answer_and_the_reference(tmp_path: Path) -> None:
    db = tmp_path / "judged.db"
    log, run_id = run_in_process(db, **JUDGED)
    judged = next(se.event for se in log.events(run_id) if isinstance(se.event, CandidateJudged))
    answered = next(ev for ev, _ in _answers(log, run_id)
                    if isinstance(ev, CandidateAnswered) and (ev.prompt_id, ev.task, ev.stage) == (judged.prompt_id, judged.task, judged.stage))
    log.close()
    judgement = judged.judgements[0]
    answer = next(a for a in answered.answers if a.example_id == judgement.example_id)
    example = next(e for e in load_task(judged.task).train if e.id == answer.example_id)
    app = create_app(db, run_id, cursor_blink=False)
    async with app.run_test(size=(150, 80)) as pilot:
        await pilot.pause()
        # the scorer's call: its answer, the gold answer, and the judge's scores and rationales for it
        lines = [line.strip() for line in (await _open_call(pilot, app, answer.call_id)).splitlines()]
        at = lines.index(f"answer {answer.parsed!r}  confidence {fmt(answer.confidence)}: {'right' if answer.correct else 'wrong'}")
        assert lines[at + 1].startswith(f"gold {example.answer})")
        if not answer.correct:  # a wrong answer: the accuracy metric's feedback on it comes before the judge's
            assert lines[at + 2].startswith(f"feedback (accuracy): answered {answer.parsed}, the gold answer is "
                                            f"{example.answer}")
            at += 1
        assert lines[at + 2] == "judge:"
        mine = [j for j in judged.judgements if j.example_id == answer.example_id]
        assert lines[at + 3] == f"{mine[0].criterion} {fmt(mine[0].score, 2)}" and lines[at + 4] == mine[0].rationale
        # the judge's call: the answer it judged and the reference, then its rationales
        lines = [line.strip() for line in (await _open_call(pilot, app, judgement.call_id)).splitlines()]
        at = next(i for i, line in enumerate(lines) if line.startswith("[judgements of "))
        assert lines[at + 1] == f"answer {answer.parsed!r}" and lines[at + 2].startswith(f"gold {example.answer})")
        assert lines[at + 3] == f"{judgement.criterion} {fmt(judgement.score, 2)}" and lines[at + 4] == judgement.rationale


# -- the new-run form takes target-only, metrics, judge and rubric, checked as `tprompt run` checks them --------


RUBRIC = """
name = "form"
version = 2
[[criteria]]
name = "brevity"
description = "the answer is short"
"""


async def _fill_new_run(pilot: Any, app: Any, fields: dict[str, str], *, target_only: bool) -> Any:
    await pilot.press("n")
    await wait_for(pilot, lambda: isinstance(app.screen, NewRunScreen))
    form = app.screen
    for key, value in fields.items():
        form.query_one(f"#new-{key}", Input).value = value
    form.query_one("#new-target_only", Checkbox).value = target_only
    await pilot.pause()
    return form


@pytest.mark.parametrize(("fields", "target_only", "error"), [
    ({"source_tasks": "bbh/navigate"}, True, "target only runs no source stage, so it takes no source tasks"),
    ({"metrics": "exact_match, no_such_metric"}, False, "metric no_such_metric: unknown metric name"),
    ({"judge": "nosuch:model"}, False, "unknown model spec 'nosuch:model'"),
    ({"rubric": "missing-rubric.toml"}, False, "missing-rubric.toml"),
    ({"rubric": "RUBRIC"}, False, "a rubric is given but no judge"),
    ({"target_task": "no_such_task", "source_tasks": ""}, True, "unknown task 'no_such_task'"),
], ids=["target-only-with-sources", "metric", "judge", "rubric-file", "rubric-without-judge", "task"])
async def test_a_bad_new_run_is_one_line_in_the_form_and_nothing_is_written(
        db_path: Path, tmp_path: Path, fields: dict[str, str], target_only: bool, error: str) -> None:
    rubric = tmp_path / "rubric.toml"
    rubric.write_text(RUBRIC)
    fields = {"proposer": "fake", "scorer": "fake", "target_task": "bbh/web_of_lies", **fields}
    fields = {k: str(rubric) if v == "RUBRIC" else v for k, v in fields.items()}
    async with running(db_path, poll_interval=0.05) as (app, pilot):
        form = await _fill_new_run(pilot, app, fields, target_only=target_only)
        await pilot.click("#new-ok")
        box = form.query_one("#new-error", LiteralStatic)
        await wait_for(pilot, lambda: error in str(box.render()))
        assert "\n" not in str(box.render()).strip() and app.screen is form
    with EventLog(db_path, readonly=True) as log:
        assert log.runs() == []


async def test_the_new_run_form_starts_a_target_only_judged_run_with_its_metrics(db_path: Path, tmp_path: Path) -> None:
    rubric = tmp_path / "rubric.toml"
    rubric.write_text(RUBRIC)
    fields = {"source_tasks": "", "target_task": "bbh/web_of_lies", "proposer": "fake", "scorer": "fake", "steps": "1",
              "candidates": "1", "examples": "2", "test_examples": "2", "metrics": "exact_match, contains",
              "judge": "fake", "rubric": str(rubric)}
    async with running(db_path, poll_interval=0.05) as (app, pilot):
        await _fill_new_run(pilot, app, {**fields, "source_tasks": "bbh/navigate"}, target_only=True)
        app.screen.query_one("#new-source_tasks", Input).value = ""
        await pilot.click("#new-ok")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
        screen = app.screen
        await wait_for(pilot, lambda: screen.follower.state.status == "completed")
        await app.workers.wait_for_complete()
        config = screen.follower.state.config
    assert config.transfer is False and config.source_tasks == [] and config.target_task == "bbh/web_of_lies"
    assert config.metrics == ["exact_match", "contains"] and config.judge == "fake"
    assert config.rubric is not None and [c.name for c in config.rubric.criteria] == ["brevity"]
    assert config.rubric.version == 2
    with EventLog(db_path, readonly=True) as log:
        tested = log.state(screen.run_id).tested
    assert set(tested) == {"original", "best_target"}
    assert {"exact_match", "contains", "judge_brevity"} <= set(tested["best_target"].metrics)


async def test_a_form_cancelled_while_its_run_is_checked_starts_nothing(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    import tprompt.graph

    started, release = threading.Event(), threading.Event()

    def slow_preflight(config: Any, *args: Any, **kwargs: Any) -> None:  # a local model being opened
        started.set()
        release.wait(60)

    monkeypatch.setattr(tprompt.graph, "preflight", slow_preflight)
    async with running(db_path, poll_interval=0.05) as (app, pilot):
        form = await _fill_new_run(pilot, app, {"proposer": "fake", "scorer": "fake"}, target_only=False)
        await pilot.click("#new-ok")
        await wait_for(pilot, started.is_set)
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is not form)
        release.set()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.is_running and isinstance(app.screen, RunsScreen)  # was: a late dismiss popped the runs too
    with EventLog(db_path, readonly=True) as log:
        assert log.runs() == []
