"""Issue 20, "the UI shows it": a run's own metrics as columns, and each judgement where its answers or call are selected."""

from __future__ import annotations

from pathlib import Path

import pytest
from _tui_db import screen_text
from test_graph import run_in_process
from test_tui import keys_of, open_run, running, table, wait_for
from textual.widgets import Select

from tprompt.stores.events import CandidateJudged, CandidateScored
from tprompt.tui.widgets import LiteralStatic

pytestmark = pytest.mark.anyio

#: an open-ended task with two plug-in metrics and the fake judge
OPEN_JUDGED = dict(source_tasks=["pubmedqa_long"], target_task="pubmedqa_long", metrics=["rouge_l", "token_f1"],
                   judge="fake", steps=1, candidates=2, top_k=1, test_examples=4)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def open_judged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, list[CandidateJudged], list[CandidateScored]]:
    db = tmp_path_factory.mktemp("open") / "t.db"
    log, run_id = run_in_process(db, **OPEN_JUDGED)
    events = [se.event for se in log.events(run_id)]
    log.close()
    return (db, run_id, [e for e in events if isinstance(e, CandidateJudged)],
            [e for e in events if isinstance(e, CandidateScored)])


def _headings(t) -> list[str]:  # type: ignore[no-untyped-def]
    return [c.label.plain.strip() for c in t.columns.values()]


def _line(j) -> str:  # type: ignore[no-untyped-def]
    return f"{j.criterion} {j.score:.2f}" if j.score is not None else f"{j.criterion} no score"


async def test_candidates_show_the_runs_metrics_by_label_and_their_judgements(open_judged) -> None:  # type: ignore[no-untyped-def]
    db, run_id, judged, scored = open_judged
    async with running(db) as (app, pilot):
        screen = await open_run(pilot, app, run_id)
        await pilot.press("3")
        candidates = table(app, "#candidates")
        await wait_for(pilot, lambda: candidates.row_count == len(scored))
        headings = _headings(candidates)
        metrics = headings[headings.index("n") + 1: headings.index("objective")]
        judge = ["judge relevance", "judge coherence", "judge fluency", "judge faithfulness"]
        assert metrics[:2] == ["F1", "ROUGE-L"] and sorted(metrics[2:]) == sorted(judge)  # registry order, by label
        assert "accuracy" not in headings and "ECE" not in headings and "ece" not in headings
        assert "ROUGE-L" in screen_text(app)
        # The first row's candidate: its judgements (criterion, score, rationale) in the box below the table.
        candidates.focus()
        candidates.move_cursor(row=0)
        await pilot.pause()
        s = next(s for s in screen.follower.state.scores if str(s.seq) == keys_of(candidates)[0])
        mine = [j for ev in judged if (ev.prompt_id, ev.task, ev.stage, ev.split) == (s.prompt_id, s.task, s.stage, "train")
                for j in ev.judgements]
        assert mine
        box = str(screen.query_one("#candidate-text", LiteralStatic).render())
        assert f"judgements ({len(mine)}" in box
        for j in mine:
            assert f"{j.example_id}  {_line(j)}" in box
            assert (j.rationale or j.error or "") in box
        other = [j for ev in judged if ev.prompt_id != s.prompt_id for j in ev.judgements]
        assert not any(j.example_id in box and j.call_id in box for j in other)  # call ids never shown here
        text = screen_text(app)
        assert _line(mine[0]) in text and (mine[0].rationale or mine[0].error or "")[:20] in text


async def test_a_judge_call_shows_the_judgements_it_returned(open_judged) -> None:  # type: ignore[no-untyped-def]
    db, run_id, judged, _ = open_judged
    async with running(db) as (app, pilot):
        screen = await open_run(pilot, app, run_id)
        await pilot.press("4")
        await pilot.pause()
        screen.query_one("#call-agent", Select).value = "judge"
        await pilot.pause()
        calls = table(app, "#calls")
        await wait_for(pilot, lambda: calls.row_count > 0)
        calls.focus()
        calls.move_cursor(row=0)
        await pilot.pause()
        call_id = keys_of(calls)[0]
        mine = [(ev, [j for j in ev.judgements if j.call_id == call_id]) for ev in judged]
        mine = [(ev, js) for ev, js in mine if js]
        assert mine
        box = str(screen.query_one("#call-detail", LiteralStatic).render())
        for ev, js in mine:
            assert f"[judgements of {ev.prompt_id} ({ev.stage}) on {ev.task}, example {js[0].example_id}]" in box
            for j in js:
                assert _line(j) in box and (j.rationale or j.error or "") in box
        # A scorer's call judged nothing: no judgements section.
        screen.query_one("#call-agent", Select).value = "scorer"
        await pilot.pause()
        calls.move_cursor(row=0)
        await pilot.pause()
        assert "[judgements of" not in str(screen.query_one("#call-detail", LiteralStatic).render())


def test_the_report_of_a_run_with_plug_in_metrics_and_a_judge_has_its_columns(open_judged, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tprompt.experiments.report import build_report, write_report
    from tprompt.stores import EventLog

    db, run_id, _, _ = open_judged
    with EventLog(db, readonly=True) as log:
        report = build_report(log, run_id=run_id)
        write_report(log, report, tmp_path / "out")
    text = (tmp_path / "out" / "report.md").read_text()
    header = next(line for line in text.splitlines() if line.startswith("| arm |"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert cells[:4] == ["arm", "n", "F1", "ROUGE-L"] and cells[-1] == "objective"
    assert sorted(cells[4:-1]) == ["judge coherence", "judge faithfulness", "judge fluency", "judge relevance"]
    assert "| accuracy" not in text and "| ece" not in text
    assert "Higher is better in every column" in text
    row = next(line for line in text.splitlines() if line.startswith("| original prompt |"))
    assert len(row.strip("|").split("|")) == len(cells)


def test_a_judges_rationale_and_error_never_reach_the_terminal_raw() -> None:
    from tprompt.stores.events import Judgement
    from tprompt.tui.data import judgement_text

    evil = "\x1b]0;pwned\x07\x1b[2J"
    text = judgement_text([Judgement(example_id="e\x1b1", criterion="relevance", score=None, rationale=evil, error=evil),
                           Judgement(example_id="e2", criterion="fluency", score=4.0, rationale="fine")])
    assert "\x1b" not in text.plain and "\x07" not in text.plain
    assert "\\x1b]0;pwned\\x07" in text.plain and "e\\x1b1  relevance no score" in text.plain
    assert "e2  fluency 4.00\n  fine" in text.plain
