"""The tprompt terminal UI: the app and :func:`create_app`, the one factory used by the CLI and the tests.

The app reads the database through a read-only :class:`EventLog` and polls it
on a timer, so it never blocks a writer (another ``tprompt run``, or the runs it
starts itself). Runs started, resumed or forked from the UI execute in Textual
thread workers, each with its own writable :class:`EventLog`.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import work
from textual.app import App
from textual.binding import Binding

from .._text import printable
from ..errors import AppCrashed, ReadOnlyDatabase, TPromptError
from ..stores import EventLog
from ..stores.control import request_pause
from .widgets import LiteralTitles

if TYPE_CHECKING:
    from ..graph.resources import RunResources

#: Longest a quit waits for the runs started here to reach a safe point (seconds).
QUIT_WAIT_S = 120.0


class TPromptApp(LiteralTitles, App[None]):
    """Runs browser, run view, transcripts; new run, pause, resume and fork by key.

    Text from a run reaches the screen only escaped and never as markup (see
    :mod:`tprompt.tui.widgets`): in the widgets, the titles and the notifications.
    """

    CSS_PATH = "tprompt.tcss"
    TITLE = "tprompt"
    SUB_TITLE = "Transfer-Prompting runs"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("n", "new_run", "New run"),
    ]

    def __init__(
        self,
        db_path: str | Path,
        *,
        run_id: str | None = None,
        poll_interval: float = 0.5,
        cursor_blink: bool = True,
    ) -> None:
        super().__init__()
        self.db_path = Path(db_path)
        self.store = EventLog(self.db_path, readonly=True)
        try:
            self.initial_run = self.store.resolve(run_id) if run_id else None
        except BaseException:
            self.store.close()
            raise
        self.poll_interval = poll_interval
        self.cursor_blink = cursor_blink
        #: runs executing in this process (their Runner, to pause them directly)
        self.runners: dict[str, Any] = {}
        #: latest progress line per run executing here
        self.progress: dict[str, str] = {}
        self._runners_lock = threading.Lock()
        self._confirm_resume: str | None = None
        #: set on quit: runs started here pause at their next safe point, and none starts
        self._quitting = threading.Event()

    def on_mount(self) -> None:
        from .screens.runs import RunsScreen

        self.push_screen(RunsScreen())
        if self.initial_run:
            self.open_run(self.initial_run)

    async def action_quit(self) -> None:
        """Quit. Runs started here are paused first (resumable), with a notice while the work in flight ends."""
        self._quitting.set()
        with self._runners_lock:
            for runner in self.runners.values():
                runner.request_pause()
        busy = [w for w in self.workers if w.group == "runs" and not w.is_finished]
        if busy:
            self.notify(f"pausing {len(busy)} run(s) started here; quitting once the work in flight is saved",
                        markup=False, timeout=QUIT_WAIT_S)
            try:
                await asyncio.wait_for(self.workers.wait_for_complete(busy), QUIT_WAIT_S)
            except TimeoutError:
                pass  # they still pause at their next safe point; the process ends after them
        self.exit()

    def on_unmount(self) -> None:
        # Runs started here stop at their next safe point, recorded as paused
        # (resumable), instead of being cut off mid-transaction.
        self._quitting.set()
        with self._runners_lock:
            for runner in self.runners.values():
                runner.request_pause()
        self.store.close()

    def notify(self, message: str, *, title: str = "", severity: Any = "information", timeout: float | None = None,
               markup: bool = True) -> None:
        """A notification (they carry run names, task names and errors): escaped, never read as markup."""
        super().notify(printable(message), title=printable(title), severity=severity, timeout=timeout, markup=False)

    # -- navigation -----------------------------------------------------------------

    def open_run(self, run_id: str) -> None:
        """Show the run view of ``run_id`` (in place of the run view shown, if any; Esc goes back to the runs)."""
        from .screens.run import RunScreen

        if isinstance(self.screen, RunScreen):
            self.switch_screen(RunScreen(run_id))
        else:
            self.push_screen(RunScreen(run_id))

    def no_blink(self, root: Any) -> None:
        """Apply the app's cursor-blink setting to the inputs and text areas under ``root``."""
        for widget in root.query("Input, TextArea"):
            widget.cursor_blink = self.cursor_blink

    # -- actions --------------------------------------------------------------------------

    def action_new_run(self) -> None:
        from .screens.modals import NewRunRequest, NewRunScreen

        def chosen(request: NewRunRequest | None) -> None:
            if request is not None:
                self.start_new_run(request.values, resources=request.resources)

        self.push_screen(NewRunScreen(), chosen)

    def is_running_here(self, run_id: str) -> bool:
        with self._runners_lock:
            return run_id in self.runners

    def pause_run(self, run_id: str) -> None:
        """Pause a run: directly if it runs in this app, else by a request to its process."""
        with self._runners_lock:
            runner = self.runners.get(run_id)
        if runner is not None:
            runner.request_pause()
            self.notify(f"pausing {run_id} after the work in flight", markup=False)
            return
        status = self.store.run(run_id).status
        if status in ("completed", "failed", "paused"):
            self.notify(f"run {run_id} is {status}; nothing to pause", severity="warning", markup=False)
            return
        try:
            with EventLog(self.db_path) as writer:
                request_pause(writer, run_id)
        except TPromptError as exc:
            self.notify(str(exc), severity="error", markup=False)
            return
        self.notify(f"pause requested for {run_id}; its process pauses after the work in flight", markup=False)

    def resume_run(self, run_id: str) -> None:
        """Run (or continue) ``run_id`` in a worker of this app."""
        if self.is_running_here(run_id):
            self.notify(f"run {run_id} is already running here", severity="warning", markup=False)
            return
        status = self.store.run(run_id).status
        if status == "completed":
            self.notify(f"run {run_id} is already completed", severity="warning", markup=False)
            return
        if status == "running" and self._confirm_resume != run_id:
            # Another process may be writing it; two writers would conflict.
            # A killed process leaves "running" behind too, so ask once more.
            self._confirm_resume = run_id
            self.notify(
                f"run {run_id} is marked running: another process may be running it. "
                "If that process is gone, press r again to resume it here.",
                severity="warning",
                markup=False,
            )
            return
        self._confirm_resume = None
        self.execute_run(run_id)

    def _show_progress(self, run_id: str, update: Any) -> None:
        """Keep the latest progress line of a run's stream for the run screen to poll."""
        if getattr(update, "label", None) is not None:
            self.progress[run_id] = f"{update.label}: {update.done}/{update.total}"

    @work(thread=True, group="runs")
    def execute_run(self, run_id: str, resources: RunResources | None = None) -> None:
        """Worker: execute ``run_id`` with its own writable log until it completes or pauses.

        ``resources``: the run's resources if opened already (a run just created or forked here); the
        runner opens them otherwise.
        """
        from ..graph import Runner

        try:
            with EventLog(self.db_path) as writer:
                if self._quitting.is_set():
                    return  # the app quit before this run started: nothing is written
                # The runner also honours `tprompt pause RUN`; quitting pauses the run even if
                # it came while the runner was being built.
                runner = Runner(writer, run_id, pause_check=self._quitting.is_set, resources=resources)
                with self._runners_lock:
                    self.runners[run_id] = runner
                try:
                    state = runner.run(lambda update: self._show_progress(run_id, update))
                finally:
                    with self._runners_lock:
                        self.runners.pop(run_id, None)
                    self.progress.pop(run_id, None)
            self.call_from_thread(self.notify, f"run {run_id} {state.status}", markup=False)
        except TPromptError as exc:
            self.call_from_thread(self.notify, f"run {run_id}: {exc}", severity="error", markup=False)
        except Exception as exc:  # a bug must not kill the UI; the run has recorded run.failed
            self.call_from_thread(
                self.notify, f"run {run_id} failed: {type(exc).__name__}: {exc}", severity="error", markup=False
            )

    @work(thread=True, group="runs")
    def start_new_run(self, values: dict[str, Any], resources: RunResources | None = None) -> None:
        """Worker: validate and create a run from the form, open it, and execute it.

        ``resources``: the run's resources, opened by the form's check (opened here otherwise); the run
        is created and executed on them.
        """
        from ..graph import make_config, open_run

        try:
            config = make_config(values, where="new run")
            with EventLog(self.db_path) as writer:
                run_id, resources = open_run(writer, config, resources=resources)
        except TPromptError as exc:
            self.call_from_thread(self.notify, str(exc), severity="error", markup=False)
            return
        self.call_from_thread(self._open_and_run, run_id, resources)

    def _open_and_run(self, run_id: str, resources: RunResources | None = None) -> None:
        self.open_run(run_id)
        self.execute_run(run_id, resources)

    @work(thread=True, group="runs")
    def review(self, run_id: str, decision: Any) -> None:
        """Worker: record a review (a ReviewDecision) of the step ``run_id`` waits on; resume it if asked."""
        from ..graph.review import max_prompt_chars, placeholder_check, record_review, revise, waiting_candidates

        try:
            with EventLog(self.db_path) as writer:
                state = writer.state(run_id)
                kept = revise(waiting_candidates(state), drop=decision.drop, edit=decision.edit, add=decision.add,
                              max_chars=max_prompt_chars(state), check=placeholder_check(state))
                record_review(writer, run_id, kept)
        except TPromptError as exc:
            self.call_from_thread(self.notify, str(exc), severity="error", markup=False)
            return
        self.call_from_thread(self.notify, f"review of {run_id} recorded: {len(kept)} candidate(s) to score",
                              markup=False)
        if decision.resume:
            self.call_from_thread(self.execute_run, run_id)

    @work(thread=True, group="runs")
    def fork(
        self,
        run_id: str,
        *,
        at_seq: int | None,
        from_prompt_id: str | None,
        target_task: str,
        start: bool,
    ) -> None:
        """Worker: fork ``run_id`` onto ``target_task``, open the new run, optionally execute it (on the resources
        opened to check the fork)."""
        from ..graph import open_fork

        try:
            with EventLog(self.db_path) as writer:
                new_id, resources = open_fork(
                    writer,
                    run_id,
                    at_seq=at_seq,
                    from_prompt_id=from_prompt_id,
                    overrides={"target_task": target_task},
                )
        except TPromptError as exc:
            self.call_from_thread(self.notify, str(exc), severity="error", markup=False)
            return
        self.call_from_thread(self._after_fork, new_id, start, resources)

    def _after_fork(self, run_id: str, start: bool, resources: RunResources | None = None) -> None:
        self.notify(f"forked: {run_id}", markup=False)
        self.open_run(run_id)
        if start:
            self.execute_run(run_id, resources)


def create_app(
    db_path: str | Path,
    run_id: str | None = None,
    *,
    poll_interval: float = 0.5,
    cursor_blink: bool = True,
) -> TPromptApp:
    """The terminal UI on the database at ``db_path``, opening ``run_id`` if given.

    A missing database is created (empty) first, so a new user can start a run
    from the UI. ``poll_interval`` is how often (seconds) it looks for new events;
    tests pass ``cursor_blink=False`` for repeatable screenshots.

    Raises:
        StoreError: the file is not a usable tprompt database.
        UnknownRun: ``run_id`` names no run.
    """
    path = Path(db_path)
    if not path.exists():
        EventLog(path).close()  # create and migrate; the app itself only reads
    else:
        try:
            EventLog(path, readonly=True).close()
        except ReadOnlyDatabase:
            # An older schema: migrate it once (fails clearly if the file is write-protected).
            EventLog(path).close()
    return TPromptApp(path, run_id=run_id, poll_interval=poll_interval, cursor_blink=cursor_blink)


def export_screenshot(
    db_path: str | Path,
    out: str | Path,
    run_id: str | None = None,
    *,
    size: tuple[int, int] = (140, 40),
    keys: tuple[str, ...] = (),
) -> Path:
    """Run the app headless at ``size``, press ``keys``, and save an SVG screenshot to ``out``.

    The SVG is the app's own export (what a terminal of that size shows).

    Raises:
        AppCrashed: the app stopped on an error before the screenshot was saved
            (Textual has printed the traceback); nothing is written to ``out``.
    """
    out = Path(out)
    app = create_app(db_path, run_id, cursor_blink=False)

    async def autopilot(pilot: Any) -> None:
        await pilot.pause()
        for key in keys:
            await pilot.press(key)
            await pilot.pause()
        await pilot.pause()
        if app.return_code:  # it crashed (Textual printed why): save nothing, keep its exit code
            return
        app.save_screenshot(filename=out.name, path=str(out.parent.resolve()))
        app.exit()

    app.run(headless=True, size=size, auto_pilot=autopilot)
    if app.return_code:
        raise AppCrashed("the terminal UI stopped with an error; no screenshot was saved",
                         hint="the traceback above says where; please report it")
    return out


__all__ = ("TPromptApp", "create_app", "export_screenshot")
