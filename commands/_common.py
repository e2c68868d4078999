"""What every CLI command shares: settings, consoles, JSON output, opening the log.

stdout carries data (tables or ``--json``); stderr carries diagnostics and
progress. Errors are raised as :class:`~tprompt.errors.TPromptError` and turned
into one line on stderr plus a fixed exit code by ``cli.main``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.segment import Segment

from .._text import printable, printable_json
from ..errors import StoreError, UsageError

if TYPE_CHECKING:  # the store loads when a command opens it, not for `tprompt --version`
    from ..stores import EventLog

DEFAULT_DB = "tprompt.db"


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1
    USAGE = 2
    INTERRUPTED = 130


#: The database of the command line being run (set by the root callback), for the hints printed after it ends.
ACTIVE_DB: ContextVar[Path | None] = ContextVar("ACTIVE_DB", default=None)


@dataclass
class Settings:
    db_path: Path  # --db or TPROMPT_DB


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
err = SafeConsole(stderr=True, highlight=False, soft_wrap=True)  # hints stay one line: copied, they run

JSON_OPTION = typer.Option(False, "--json", help="Print machine-readable JSON on stdout and nothing else.")
RUN_ARGUMENT = typer.Argument(..., help="Run id (or a unique prefix).")


def settings(ctx: typer.Context) -> Settings:
    obj = ctx.find_root().obj
    if isinstance(obj, Settings):
        return obj
    return Settings(db_path=Path(os.environ.get("TPROMPT_DB") or DEFAULT_DB))


def tprompt_cmd() -> str:
    """``tprompt`` as a printed command must start to reach this database again: ``--db PATH`` unless it is the default.

    Every hint a command prints (``next:``, ``continue with:``) starts with this, so it works as printed.
    """
    try:  # typer >= 0.20 vendors click
        from typer._click.globals import get_current_context
    except ImportError:  # pragma: no cover - older typer on real click
        from click.globals import get_current_context  # type: ignore[no-redef]
    ctx = get_current_context(silent=True)
    obj = ctx.find_root().obj if ctx is not None else None
    if isinstance(obj, Settings):
        path = obj.db_path
    else:  # after the command (an error being printed): the database its --db named
        path = ACTIVE_DB.get() or Path(os.environ.get("TPROMPT_DB") or DEFAULT_DB)
    if path == Path(DEFAULT_DB):
        return "tprompt"
    return f"tprompt --db {shlex.quote(str(path))}"


_HINTED_COMMAND = re.compile(r"\btprompt (?=(?:resume|show|fork|review|rescore|replay|events|export|transcript|runs|compare|"
                             r"report|experiment|pause|eval|ui)\b)")


def with_db(text: str) -> str:
    """``text`` with every ``tprompt COMMAND`` it names (an error's hint from the core) carrying ``--db`` as needed."""
    prefix = tprompt_cmd()
    return text if prefix == "tprompt" else _HINTED_COMMAND.sub(lambda _m: prefix + " ", text)


def open_log(ctx: typer.Context, *, readonly: bool = True, create: bool = False) -> EventLog:
    """Open the database named by ``--db``; readers open it read-only.

    Only commands that start runs pass ``create=True``; the others need the
    database (and its runs) to be there already, so they never create a file.
    """
    path = settings(ctx).db_path
    if not create and not path.exists():
        raise StoreError(
            f"no tprompt database at {path}",
            hint="pass --db PATH or set TPROMPT_DB; `tprompt run` creates one",
        )
    from ..stores import EventLog

    return EventLog(path, readonly=readonly, create=create)


@contextlib.contextmanager
def log_and_run(ctx: typer.Context, run: str, *, readonly: bool = True) -> Iterator[tuple[EventLog, str]]:
    """The database as :func:`open_log` opens it, and the id of the run ``run`` names (a unique prefix resolved).

    Raises:
        UnknownRun: no run, or more than one, matches ``run``.
    """
    with open_log(ctx, readonly=readonly) as log:
        yield log, log.resolve(run)


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


def check_output_file(path: Path, option: str) -> None:
    """Refuse an output file (``option`` names it) that cannot be written, before any work starts."""
    try:
        _check_output_file(path, option)
    except OSError as exc:  # e.g. a name too long for the file system, even to look it up
        raise UsageError(f"{option} {path}: cannot write it ({exc.strerror or exc})",
                         hint="choose a shorter name in a folder you can write") from exc


def _check_output_file(path: Path, option: str) -> None:
    if path.is_dir():
        raise UsageError(f"{option} {path}: is a directory", hint="give a file name")
    if not path.parent.is_dir():
        raise UsageError(f"{option} {path}: folder {path.parent} does not exist", hint="create it first")
    existed = path.exists()
    if existed and not path.is_file():
        raise UsageError(f"{option} {path}: not a regular file", hint="give a file name")
    try:  # the only sure test (permissions, read-only mounts, /proc, name length) is to try
        with open(path, "ab"):
            pass
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot write it ({exc.strerror or exc})",
                         hint="choose a file in a folder you can write") from exc
    if not existed:
        path.unlink()


def prepare_output_dir(path: Path, option: str) -> None:
    """Make the output folder ``path`` (``option`` names it), or refuse it with one line."""
    try:
        if path.exists() and not path.is_dir():
            raise UsageError(f"{option} {path}: exists and is not a folder", hint="give a folder (new or existing)")
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".tprompt-write-check"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot write there ({exc.strerror or exc})",
                         hint="choose a folder you can write") from exc


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one, never a part.

    Raises:
        UsageError: the file cannot be written (nothing is left behind).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write {path} ({exc.strerror or exc})", hint="choose a file in a folder you can write") from exc
