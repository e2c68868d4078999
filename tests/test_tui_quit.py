"""Quitting the UI pauses the runs it started, at any moment (issue 12, item 4): also when `q`
comes while the run is still being set up (its models loading)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from test_graph import SMALL

from tprompt.graph import Runner, create_run, make_config
from tprompt.graph import runner as runner_module
from tprompt.stores import EventLog
from tprompt.tui import create_app


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_quit_while_the_run_is_being_set_up_pauses_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "q.db"
    log = EventLog(db)
    run_id = create_run(log, make_config({**SMALL, "scorer": "fake:delay=0.02"}))
    calls = {"n": 0}

    def pause_soon() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    assert Runner(log, run_id, pause_check=pause_soon).run().status == "paused"
    app = create_app(db, cursor_blink=False, poll_interval=0.05)
    real_init = runner_module.Runner.__init__
    held = threading.Event()
    unmounted = threading.Event()  # the app's store is closed as the last step of unmounting
    close_store = app.store.close

    def closing() -> None:
        unmounted.set()
        close_store()

    app.store.close = closing  # type: ignore[method-assign]

    def slow_init(self: Any, *args: Any, **kwargs: Any) -> None:
        # Stands in for a model that takes long to load: the runner exists only after the quit.
        held.set()
        deadline = time.monotonic() + 60  # bounds a hang only
        while time.monotonic() < deadline:
            quitting = getattr(app, "_quitting", None)
            if (quitting is not None and quitting.is_set()) or unmounted.is_set():
                break
            time.sleep(0.01)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(runner_module.Runner, "__init__", slow_init)
    async with app.run_test() as pilot:
        await pilot.pause()
        app.resume_run(run_id)  # what `r` does on a paused run
        while not held.is_set():
            await pilot.pause(0.01)
        await pilot.press("q")
    deadline = time.monotonic() + 120  # bounds a hang only
    reader = EventLog(db, readonly=True)
    while reader.run(run_id).status == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    types = [e.type for e in reader.events(run_id)]
    assert "run.completed" not in types, "the run went on headless after the UI quit"
    assert reader.state(run_id).status == "paused"
