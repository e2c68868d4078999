"""Widgets shared by the screens: a table sorted by our own values, the score plot, diff text.

Every text a run holds (names, prompts, answers, task and model names, errors) is shown
as it is (see :mod:`tprompt.tui._literal`): never read as markup, its control characters
made visible by the CLI's rule (:func:`tprompt._text.printable`). The table's rows,
:class:`LiteralStatic`, :class:`LiteralInput` and the titles (:class:`LiteralTitles`) apply
it themselves, so what they show cannot drive the terminal.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import DataTable, Input, Static

from .._text import printable
from ._literal import LiteralText, literal
from .data import Curve, fmt


class LiteralTitles:
    """Mixin for the app and its screens: a title or sub-title (the header's, the screenshot's) is shown escaped."""

    def validate_title(self, title: Any) -> Any:
        return None if title is None else printable(str(title))

    def validate_sub_title(self, sub_title: Any) -> Any:
        return None if sub_title is None else printable(str(sub_title))


class LiteralStatic(Static):
    """A Static whose content is always shown :func:`literal` (it holds text from a run)."""

    def __init__(self, content: str | Text = "", **kwargs: Any) -> None:
        super().__init__(literal(content), **kwargs)

    def update(self, content: Any = "", *, layout: bool = True) -> None:
        super().update(literal(content), layout=layout)


class LiteralInput(Input):
    """An Input that holds no control character: a value or a paste holding them shows (and keeps) them escaped.

    A prompt with ESC put in it for editing reads ``\\x1b``, as everywhere else; what the
    user submits is that visible text.
    """

    def validate_value(self, value: str) -> str:
        return printable(value)

    def replace(self, text: str, start: int, end: int) -> None:
        # Escaped before insertion, so the cursor lands after the visible escape.
        super().replace(printable(text), start, end)


@dataclass(frozen=True, slots=True)
class Row:
    """A table row: its key, the values it sorts by (one per column) and the cells shown.

    ``cells`` may be a function making them: a table of 40k rows then builds
    the cells of the few hundred it shows only. ``values`` may be one too
    (made when the table is first sorted).
    """

    key: str
    values: tuple[Any, ...] | Callable[[], tuple[Any, ...]]
    cells: tuple[Text | str, ...] | Callable[[], tuple[Text | str, ...]]

    def value(self, column: int) -> Any:
        """The value the row sorts by in ``column``."""
        values = self.values() if callable(self.values) else self.values
        return values[column]

    def shown(self) -> tuple[Text, ...]:
        """The cells (made now if they were given as a function), each :func:`literal`."""
        cells = self.cells() if callable(self.cells) else self.cells
        return tuple(literal(cell) for cell in cells)


def _sort_key(value: Any) -> tuple[int, Any]:
    # None (an undefined metric) sorts after everything, numbers before text.
    if value is None:
        return (2, 0)
    if isinstance(value, (int, float)):
        return (0, value)
    return (1, str(value).lower())


class SortedTable(DataTable[Any]):
    """A row-cursor DataTable that sorts by the raw value of a column, showing a window of its rows.

    Click a header, or press ``s`` to sort by the next column and ``S`` to flip
    the order. Refilling keeps the cursor on the same row key, so a table that
    is refreshed while the user reads it does not jump.

    Only :data:`WINDOW` rows are in the DataTable at a time (it measures every
    cell of every row it holds, which made a 40k-event run take most of a
    minute to open). The cursor moving near the window's edge slides it;
    ctrl+Home and ctrl+End go to the first and the last row of the whole table. The border
    subtitle says which rows are shown when not all are.
    """

    #: Rows held by the DataTable at once.
    WINDOW = 600
    #: The window slides when the cursor comes this close to its edge.
    EDGE = 5

    BINDINGS = [
        Binding("s", "next_sort", "Sort"),
        Binding("S", "flip_sort", "Reverse", show=False),
    ]

    def __init__(self, *, sort_column: int | None = None, reverse: bool = False, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.sort_column = sort_column
        self.reverse = reverse
        self._rows: list[Row] = []
        self._labels: list[str] = []
        self._order: list[Row] | None = None  # the sorted rows (None: _rows as they are)
        self._offset = 0  # index in the ordered rows of the first row shown
        self._sliding = False

    def set_columns(self, labels: Sequence[str]) -> None:
        """(Re)define the columns; existing rows are dropped."""
        labels = [printable(label) for label in labels]  # metric names come from the log
        if labels == self._labels:
            return
        self._labels = labels
        self.clear(columns=True)
        self._rows, self._order, self._offset = [], None, 0
        for i, label in enumerate(labels):
            # Two spare cells: the column is then wide enough for a sort mark.
            self.add_column(Text(label + "  "), key=str(i))
        self._update_header_labels()

    def set_rows(self, rows: Sequence[Row]) -> None:
        """Replace the rows and redraw (sorted), keeping the cursor on its row."""
        self._rows = list(rows)
        self._refill()

    def extend(self, rows: Sequence[Row]) -> None:
        """Add rows at the end: appended in place when unsorted and the window is at the end, else a refill."""
        rows = list(rows)
        if not rows:
            return
        if self.sort_column is not None:
            self._rows.extend(rows)
            self._refill()
            return
        shown_to_end = self._offset + self.row_count == len(self._rows)
        self._rows.extend(rows)
        if not shown_to_end:
            self._update_subtitle()
            return  # the new rows are below the window; moving down reaches them
        self._sliding = True
        try:
            for row in rows[: max(0, self.WINDOW - self.row_count)]:
                self.add_row(*row.shown(), key=row.key)
        finally:
            self._sliding = False
        self._update_subtitle()

    @property
    def total_rows(self) -> int:
        """Rows of the whole table (``row_count`` is the window's)."""
        return len(self._rows)

    @property
    def rows_shown(self) -> list[Row]:
        """Every row, in the order shown (the window's and the others)."""
        return list(self._ordered())

    def _ordered(self) -> list[Row]:
        if self.sort_column is None:
            return self._rows
        if self._order is None:
            col = self.sort_column
            self._order = sorted(self._rows, key=lambda r: _sort_key(r.value(col)), reverse=self.reverse)
        return self._order

    def at_end(self) -> bool:
        """Whether the cursor is on the last row of the whole table (or the table is empty)."""
        if not self.row_count:
            return True
        return self._offset + self.cursor_row >= len(self._ordered()) - 1

    def move_to_end(self) -> None:
        """Put the cursor on the last row of the whole table."""
        ordered = self._ordered()
        if ordered:
            self.show_key(ordered[-1].key)

    def show_key(self, key: str, *, recentre: bool = False) -> None:
        """Put the cursor on the row ``key``, sliding the window to it if needed (or ``recentre``)."""
        ordered = self._ordered()
        index = next((i for i, r in enumerate(ordered) if r.key == key), None)
        if index is None:
            return
        if recentre or not self._offset <= index < self._offset + self.row_count:
            self._show_window(max(0, min(index - self.WINDOW // 2, len(ordered) - self.WINDOW)))
        self._sliding = True
        try:
            self.move_cursor(row=index - self._offset, animate=False)
        finally:
            self._sliding = False

    def current_key(self) -> str | None:
        """The key of the row under the cursor, if any."""
        if not self.row_count:
            return None
        try:
            return str(self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value)
        except Exception:  # cursor outside the table while it is being refilled
            return None

    def _refill(self) -> None:
        keep = self.current_key()
        scroll = self.scroll_y
        self._order = None
        ordered = self._ordered()
        index = next((i for i, r in enumerate(ordered) if r.key == keep), None) if keep is not None else None
        offset = self._offset
        if index is not None and not offset <= index < offset + self.WINDOW:
            offset = index - self.WINDOW // 2
        self._show_window(max(0, min(offset, len(ordered) - self.WINDOW)))
        if index is not None:
            self.move_cursor(row=index - self._offset, animate=False)
        self.scroll_y = scroll
        self._update_header_labels()

    def _show_window(self, offset: int) -> None:
        self._sliding = True
        try:
            self.clear(columns=False)
            self._offset = offset
            for row in self._ordered()[offset : offset + self.WINDOW]:
                self.add_row(*row.shown(), key=row.key)
        finally:
            self._sliding = False
        self._update_subtitle()

    def _update_subtitle(self) -> None:
        total = len(self._rows)
        if total > self.row_count:
            self.border_subtitle = f"rows {self._offset + 1}-{self._offset + self.row_count} of {total}"
        else:
            self.border_subtitle = None

    def watch_cursor_coordinate(self, old: Any, new: Any) -> None:
        super().watch_cursor_coordinate(old, new)
        if self._sliding or not self.row_count or old == new:
            return
        edge = min(self.EDGE, self.WINDOW // 4)
        near_top = new.row < edge and self._offset > 0
        near_bottom = new.row >= self.row_count - edge and self._offset + self.row_count < len(self._ordered())
        if near_top or near_bottom:
            # Re-centre the window on the cursor's row.
            self.show_key(str(self.coordinate_to_cell_key(new).row_key.value), recentre=True)

    def action_scroll_top(self) -> None:
        ordered = self._ordered()
        if ordered:
            self.show_key(ordered[0].key)

    def action_scroll_bottom(self) -> None:
        self.move_to_end()

    def _update_header_labels(self) -> None:
        for i, label in enumerate(self._labels):
            column = self.columns.get(str(i))  # type: ignore[call-overload]
            if column is None:
                continue
            mark = "  "
            if self.sort_column == i:
                mark = " ▼" if self.reverse else " ▲"
            column.label = Text(label + mark)
        self.refresh()

    def sort_by(self, column: int, *, reverse: bool | None = None) -> None:
        """Sort by ``column`` (clicking the same column again flips the order)."""
        if reverse is None:
            reverse = (not self.reverse) if self.sort_column == column else False
        self.sort_column = column
        self.reverse = reverse
        self._refill()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        self.sort_by(int(str(event.column_key.value)))

    def action_next_sort(self) -> None:
        if not self._labels:
            return
        nxt = 0 if self.sort_column is None else (self.sort_column + 1) % len(self._labels)
        self.sort_by(nxt, reverse=False)

    def action_flip_sort(self) -> None:
        self.sort_by(self.sort_column or 0, reverse=not self.reverse)


class ScorePlot(Widget):
    """Objective per step: every candidate (·) and the best so far (●), per stage.

    Drawn with plain characters so it is cheap, deterministic in snapshots and
    needs no plotting library.
    """

    DEFAULT_CSS = """
    ScorePlot { height: 14; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.curves: list[Curve] = []

    def set_curves(self, curves: Sequence[Curve]) -> None:
        self.curves = [c for c in curves if c.steps]
        self.refresh()

    def render(self) -> Text:
        return plot_text(self.curves, self.size.width, self.size.height)


_STAGE_STYLE = {"source": "cyan", "target": "magenta"}


def plot_text(curves: Sequence[Curve], width: int, height: int) -> Text:
    """The score plot as rich Text of ``width`` x ``height`` cells."""
    if not curves:
        return Text("no scored candidates yet", style="dim")
    columns: list[tuple[str, int, list[float], float]] = []
    for curve in curves:
        for step, values, best in zip(curve.steps, curve.candidates, curve.best):
            columns.append((curve.stage, step, values, best))
    values = [v for _, _, vs, b in columns for v in (*vs, b)]
    lo, hi = min(values), max(values)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.05, hi + 0.05
    label_w = 7
    rows = max(3, height - 3)  # x labels, legend
    plot_w = max(10, width - label_w - 1)
    gap = max(1, min(8, plot_w // max(1, len(columns))))
    grid: list[list[tuple[str, str]]] = [[(" ", "")] * plot_w for _ in range(rows)]

    def y_of(v: float) -> int:
        return rows - 1 - round((v - lo) / (hi - lo) * (rows - 1))

    prev: tuple[int, int] | None = None
    prev_stage = None
    for i, (stage, _step, vs, best) in enumerate(columns):
        x = i * gap + gap // 2
        if x >= plot_w:
            break
        if stage != prev_stage:
            prev, prev_stage = None, stage  # each stage has its own best line
        style = _STAGE_STYLE.get(stage, "white")
        for v in vs:
            grid[y_of(v)][x] = ("·", style)
        by = y_of(best)
        if prev is not None and prev[1] == by:
            for xx in range(prev[0] + 1, x):
                if grid[by][xx][0] == " ":
                    grid[by][xx] = ("─", "green")
        grid[by][x] = ("●", "bold green")
        prev = (x, by)
    out = Text()
    for r, line in enumerate(grid):
        if r == 0:
            label = fmt(hi)
        elif r == rows - 1:
            label = fmt(lo)
        elif r == rows // 2:
            label = fmt((hi + lo) / 2)
        else:
            label = ""
        out.append(label.rjust(label_w - 1) + " │", style="dim")
        for ch, style in line:
            out.append(ch, style=style or None)
        out.append("\n")
    out.append(" " * (label_w - 1) + " └" + "─" * plot_w + "\n", style="dim")
    axis = [" "] * plot_w
    for i, (stage, step, _vs, _b) in enumerate(columns):
        x = i * gap + gap // 2
        tag = f"{stage[0]}{step}"
        if x + len(tag) <= plot_w and all(c == " " for c in axis[x : x + len(tag) + 1]):
            axis[x : x + len(tag)] = list(tag)
    out.append(" " * (label_w + 1) + "".join(axis) + "\n", style="dim")
    out.append(" " * (label_w + 1))
    out.append("· candidate (", style="dim")
    out.append("source", style="cyan")
    out.append(" / ", style="dim")
    out.append("target", style="magenta")
    out.append(")  ", style="dim")
    out.append("● best so far", style="bold green")
    return out


def diff_text(a: str, b: str, *, a_label: str = "a", b_label: str = "b") -> Text:
    """A unified diff of two prompts, word-wrapped lines, as literal styled Text."""
    # Escaped first: str.splitlines and str.split also break at CR, NEL and other controls,
    # which would vanish from the diff instead of showing.
    a, b, a_label, b_label = printable(a), printable(b), printable(a_label), printable(b_label)
    out = Text()
    lines = list(
        difflib.unified_diff(
            a.splitlines() or [""], b.splitlines() or [""], fromfile=a_label, tofile=b_label, lineterm="", n=3
        )
    )
    if not lines:
        return Text("the two prompts are identical", style="dim")
    for line in lines:
        if line.startswith(("+++", "---")):
            style = "bold"
        elif line.startswith("@@"):
            style = "cyan"
        elif line.startswith("+"):
            style = "green"
        elif line.startswith("-"):
            style = "red"
        else:
            style = ""
        out.append(line, style=style or None)
        out.append("\n")
    # Single-line prompts differ in words more than in lines: add a word diff.
    if len(a.splitlines()) <= 1 and len(b.splitlines()) <= 1:
        out.append("\nword diff:\n", style="bold")
        sm = difflib.SequenceMatcher(a=a.split(), b=b.split())
        aw, bw = a.split(), b.split()
        for op, i1, i2, j1, j2 in sm.get_opcodes():
            if op == "equal":
                out.append(" ".join(aw[i1:i2]) + " ")
            if op in ("delete", "replace"):
                out.append(" ".join(aw[i1:i2]) + " ", style="red strike")
            if op in ("insert", "replace"):
                out.append(" ".join(bw[j1:j2]) + " ", style="green underline")
    return out



__all__ = ("LiteralInput", "LiteralStatic", "LiteralText", "LiteralTitles", "Row", "ScorePlot", "SortedTable", "diff_text",
           "literal", "plot_text")
