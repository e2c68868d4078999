"""Builds the recorded databases the TUI tests and snapshots run against.

Deterministic on purpose: fixed run ids, a fake clock for every stored
timestamp, counted call ids and fixed latencies, and the ``fake`` model, so a
screenshot of the same screen is the same on every machine.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from tprompt.graph import Runner, create_run, make_config
from tprompt.stores import EventLog

#: A prompt full of rich markup: it must show literally everywhere.
MARKUP_PROMPT = "[bold]x[/] [link=http://a]y[/link] [/] [red on blue]Answer[/red on blue] \\[escaped] [/bold]"

DEMO_RUN = "r-demo000001"
FORK_RUN = "r-fork000001"
MARKUP_RUN = "r-markup0001"

DEMO_CONFIG: dict[str, Any] = {
    "name": "demo",
    "source_tasks": ["ai2_science"],
    "target_task": "arc_challenge",
    "proposer": "fake",
    "scorer": "fake",
    "steps": 2,
    "candidates": 3,
    "top_k": 2,
    "examples": 4,
    "test_examples": 5,
    # logprob on these multiple-choice tasks: the fake model's option
    # probabilities give candidates different scores, so the plot has a shape.
    "mode": "auto",
}


def _fake_clock() -> Any:
    start = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    ticks = itertools.count()
    return lambda: (start + timedelta(seconds=next(ticks))).isoformat(timespec="microseconds")


def deterministic(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fixed timestamps and call ids for everything written while the patch lasts."""
    import tprompt.models.recorder as recorder
    import tprompt.stores.control as control
    import tprompt.stores.log as log_module
    import tprompt.stores.transcripts as transcripts

    clock = _fake_clock()
    for module in (log_module, transcripts, control):
        monkeypatch.setattr(module, "now_iso", clock)
    calls = itertools.count(1)
    monkeypatch.setattr(recorder, "new_call_id", lambda: f"call-{next(calls):05d}")


def build_recorded_db(path: Path) -> Path:
    """A database with a finished run, a fork of it onto another target, and a markup-laden run."""
    with EventLog(path) as log:
        create_run(log, make_config(DEMO_CONFIG), run_id=DEMO_RUN)
        Runner(log, DEMO_RUN).run()
        state = log.state(DEMO_RUN)
        source_end = next(se.seq for se in log.events(DEMO_RUN) if se.type == "stage.completed")
        best_source = state.best("source")
        assert best_source is not None
        config = dict(state.config, target_task="mmlu/college_biology", name="fork")
        log.fork(
            DEMO_RUN,
            source_end,
            config=config,
            target_task="mmlu/college_biology",
            from_prompt_id=best_source.prompt_id,
            run_id=FORK_RUN,
            name="fork",
        )
        Runner(log, FORK_RUN).run()
        markup = dict(DEMO_CONFIG, name="[b]markup[/b]", original_prompt=MARKUP_PROMPT, steps=1, candidates=2)
        create_run(log, make_config(markup), run_id=MARKUP_RUN)
        Runner(log, MARKUP_RUN).run()
        # Latency is measured wall-clock time; pin it for the screenshots.
        with log._conn:
            log._conn.execute("UPDATE transcripts SET latency_s = 0.125")
        # Everything into the main file, so a plain copy of it is complete.
        log._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


def screen_text(app: Any) -> str:
    """The app's current screen as plain text (what a user would read)."""
    import io

    from rich.console import Console

    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True, record=True,
                      legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()
