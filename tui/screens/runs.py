"""The runs browser: every run in the database, sortable, filterable, updated live."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input

from ...errors import TPromptError
from ..data import RunsModel, RunSummary, fmt, one_line
from ..widgets import (
    LiteralInput,
    LiteralStatic,
    LiteralText,
    LiteralTitles,
    Row,
    SortedTable,
)

COLUMNS = ("run", "name", "status", "source", "target", "models", "best", "created", "parent")

_STATUS_STYLE = {
    "running": "bold yellow",
    "completed": "green",
    "paused": "cyan",
    "failed": "bold red",
    "unreadable": "bold red",
    "created": "dim",
}


def summary_row(s: RunSummary) -> Row:
    """A runs-table row; every cell is literal Text (names and tasks are user data)."""
    parent = f"{s.parent_run_id}@{s.parent_seq}" if s.parent_run_id else ""
    best = fmt(s.best_objective) + (f" {s.best_stage[0]}" if s.best_stage else "")
    created = s.created_at[:19].replace("T", " ")
    return Row(
        key=s.run_id,
        values=(
            s.run_id, s.name or "", s.status, ", ".join(s.source_tasks), s.target_task, s.models,
            s.best_objective, s.created_at, s.parent_run_id or "",
        ),
        cells=(
            LiteralText(s.run_id, style="bold"),
            LiteralText(s.name or ""),
            LiteralText(s.status, style=_STATUS_STYLE.get(s.status, "")),
            LiteralText(", ".join(s.source_tasks) or "-"),
            LiteralText(s.target_task if s.error is None else one_line(s.error, 60)),
            LiteralText(s.models),
            LiteralText(best, justify="right"),
            LiteralText(created),
            LiteralText(parent),
        ),
    )


class RunsScreen(LiteralTitles, Screen[None]):
    """A table of runs; Enter opens one. Polls the database for new runs and events."""

    BINDINGS = [
        Binding("enter", "open_run", "Open", show=True),
        Binding("slash", "focus_filter", "Filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("f5", "reload", "Reload", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.model: RunsModel | None = None
        self.summaries: list[RunSummary] = []
        self._error: str | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield LiteralInput(placeholder="filter runs (id, task, model, status...)  /", id="runs-filter")
        yield SortedTable(id="runs-table", sort_column=7, reverse=True)
        yield LiteralStatic(id="runs-count")
        yield Footer()

    def on_mount(self) -> None:
        app: Any = self.app
        app.no_blink(self)
        self.model = RunsModel(app.store)
        table = self.query_one(SortedTable)
        table.set_columns(COLUMNS)
        self.reload()
        table.focus()
        self.set_interval(app.poll_interval, self.poll)

    def poll(self) -> None:
        try:
            if self.model is not None and self.model.changed():
                self.reload()
        except TPromptError as exc:  # e.g. the file was replaced or locked: say so, keep polling
            message = str(exc)
            if message != self._error:
                self._error = message
                self.notify(message, severity="error", markup=False)
            return
        self._error = None

    def reload(self) -> None:
        assert self.model is not None
        self.summaries = self.model.summaries()
        self.show()

    def show(self) -> None:
        needle = self.query_one("#runs-filter", Input).value
        shown = [s for s in self.summaries if s.matches(needle)]
        self.query_one(SortedTable).set_rows([summary_row(s) for s in shown])
        count = f"{len(shown)} of {len(self.summaries)} runs" if needle else f"{len(self.summaries)} runs"
        self.query_one("#runs-count", LiteralStatic).update(LiteralText(count, style="dim"))

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "runs-filter":
            self.show()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one(SortedTable).focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        app: Any = self.app
        app.open_run(str(event.row_key.value))

    def action_open_run(self) -> None:
        key = self.query_one(SortedTable).current_key()
        if key:
            app: Any = self.app
            app.open_run(key)

    def action_focus_filter(self) -> None:
        self.query_one("#runs-filter", Input).focus()

    def action_clear_filter(self) -> None:
        self.query_one("#runs-filter", Input).value = ""
        self.query_one(SortedTable).focus()

    def action_reload(self) -> None:
        self.reload()
