"""What every CLI command shares: settings, consoles, JSON output, opening the log.

stdout carries data (tables or ``--json``); stderr carries diagnostics and
progress. Errors are raised as :class:`~tprompt.errors.TPromptError` and turned
into one line on stderr plus a fixed exit code by ``cli.main``.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.segment import Segment

from .._text import printable, printable_json
from ..errors import StoreError
from ..stores import EventLog

DEFAULT_DB = "tprompt.db"


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1
    USAGE = 2
    INTERRUPTED = 130


@dataclass
class Settings:
    db: Path


class SafeConsole(Console):
    """A rich console that never passes control characters of the printed text through.

    Text from models and users (prompts, answers, errors) is rendered as segments;
    their control characters are made visible (:func:`tprompt._text.printable`) before
    rich adds its own styling codes, so only rich's escapes reach the terminal.
    """

    def _render_buffer(self, buffer: Any) -> str:
        return super()._render_buffer(
            Segment(printable(text), style, control) if not control else Segment(text, style, control)
            for text, style, control in buffer
        )


#: Data goes to stdout; everything else to stderr. Piped output has no width
#: to respect, so tables are not squeezed into rich's default 80 columns.
out = SafeConsole(soft_wrap=False, highlight=False, width=None if sys.stdout.isatty() else 160)
err = SafeConsole(stderr=True, highlight=False)

JSON_OPTION = typer.Option(False, "--json", help="Print machine-readable JSON on stdout and nothing else.")


def settings(ctx: typer.Context) -> Settings:
    obj = ctx.find_root().obj
    if isinstance(obj, Settings):
        return obj
    return Settings(db=Path(os.environ.get("TPROMPT_DB") or DEFAULT_DB))


def open_log(ctx: typer.Context, *, readonly: bool = True) -> EventLog:
    """Open the database named by ``--db``; readers open it read-only."""
    path = settings(ctx).db
    if readonly and not path.exists():
        raise StoreError(
            f"no tprompt database at {path}",
            hint="pass --db PATH or set TPROMPT_DB; `tprompt run` creates one",
        )
    return EventLog(path, readonly=readonly)


def print_json(data: Any) -> None:
    """Write ``data`` as JSON to stdout (the only thing a --json command prints); no raw control character."""
    sys.stdout.write(printable_json(json.dumps(data, indent=2, default=str, ensure_ascii=False)))
    sys.stdout.write("\n")
    sys.stdout.flush()


def fmt_num(value: float | None, digits: int = 3) -> str:
    """A metric for a table: fixed digits, and "n/a" for an undefined value."""
    if value is None:
        return "n/a"
    if isinstance(value, float) and value != value:  # NaN never reaches a table
        return "n/a"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"{value:.{digits}f}"


def shorten(text: str, width: int = 80) -> str:
    """One line of at most ``width`` characters, control characters escaped (``str.split`` would drop some)."""
    one = " ".join(printable(text).split())
    return one if len(one) <= width else one[: width - 1] + "…"
