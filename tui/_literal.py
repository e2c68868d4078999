"""How the UI turns text from a run into rich Text: as it is, with control characters visible.

The rule is the CLI's (:func:`tprompt._text.printable`): ESC, BEL, CR, backspace, DEL and C1
are written as ``\\x1b`` and so on, never passed to the terminal and never dropped (rich's
own ``Text`` silently deletes BEL, backspace, CR, VT and FF and passes ESC through). Text
is never read as markup. Screens build text from a run with :class:`LiteralText`; the
widgets that show such text (tables, :class:`~tprompt.tui.widgets.LiteralStatic`) pass it
through :func:`literal` again, so a plain ``Text`` that slips in still cannot drive the terminal.
"""

from __future__ import annotations

from typing import Any

from rich.text import Span, Text

from .._text import printable


class LiteralText(Text):
    """rich ``Text`` whose strings, given or appended, are escaped by :func:`printable` first."""

    def __init__(self, text: str = "", *args: Any, **kwargs: Any) -> None:
        super().__init__(printable(text), *args, **kwargs)

    def append(self, text: str | Text, style: Any = None) -> LiteralText:
        super().append(printable(text) if isinstance(text, str) else literal(text), style)
        return self


def literal(content: str | Text) -> Text:
    """``content`` as Text to show as it is: no markup read, control characters escaped.

    A string becomes plain Text; a styled Text keeps its styles, moved over the escapes.
    """
    if not isinstance(content, Text):
        return Text(printable(content))
    plain = content.plain
    shown = printable(plain)
    if shown is plain:
        return content
    # Where each character of ``plain`` starts in ``shown`` (and the end).
    starts = [0]
    for ch in plain:
        starts.append(starts[-1] + len(printable(ch)))
    out = content.blank_copy(shown)
    end = len(plain)
    out.spans = [Span(starts[min(sp.start, end)], starts[min(sp.end, end)], sp.style) for sp in content.spans]
    return out


__all__ = ("LiteralText", "literal")
