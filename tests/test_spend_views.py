"""Spend per agent and stage in the TUI and in reports, as `tprompt show` has it (issue 11)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_graph import run_in_process
from test_tui import open_run, running

from tprompt.experiments.report import build_report, render_markdown
from tprompt.stores import EventLog


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


PRICES = {"fake": (1.0, 2.0)}  # USD per million (input, output) tokens: every fake call costs something


def test_report_shows_spend_per_agent_and_stage(tmp_path: Path) -> None:
    log, run_id = run_in_process(tmp_path / "t.db", prices=PRICES)
    report = build_report(log, run_id=run_id)
    text = render_markdown(report)
    section = text.split("## Spend", 1)[1]
    assert "| proposer | source |" in section and "| scorer | test |" in section
    total = next(line for line in section.splitlines() if line.startswith("| total"))
    usd = float(total.strip("| ").split("|")[-1])
    assert usd > 0 and usd == round(sum(r[5] for r in report.spend), 4)


def test_report_without_priced_calls_says_so(tmp_path: Path) -> None:
    log, run_id = run_in_process(tmp_path / "t.db")
    section = render_markdown(build_report(log, run_id=run_id)).split("## Spend", 1)[1]
    total = next(line for line in section.splitlines() if line.startswith("| total"))
    assert total.rstrip(" |").endswith("-")  # no price known: no $0.00 pretending to be computed


@pytest.mark.anyio
async def test_tui_scores_tab_shows_spend(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    log, run_id = run_in_process(db, prices=PRICES)
    log.close()
    async with running(db) as (app, pilot):
        await open_run(pilot, app, run_id)
        await pilot.press("2")
        await pilot.pause()
        text = str(app.screen.query_one("#spend").render())
        assert "spend (calls answered by a model)" in text
        lines = text.splitlines()
        assert any(line.split()[:2] == ["proposer", "source"] for line in lines)
        total = next(line for line in lines if line.startswith("total"))
        with EventLog(db, readonly=True) as ro:
            usd = sum(r[5] for r in ro.transcripts.spend([run_id]))
        assert total.split()[-1] == f"{usd:.4f}"


def test_a_runs_prices_do_not_leak_into_the_next_run(tmp_path: Path) -> None:
    # Model instances are shared in a process (the TUI, experiments): a price set for one run
    # must not price another run's calls.
    run_in_process(tmp_path / "a.db", prices=PRICES)
    log, run_id = run_in_process(tmp_path / "b.db")
    assert all(row[5] is None for row in log.transcripts.spend([run_id]))
