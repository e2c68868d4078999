"""``tprompt ui [RUN]``: the Textual terminal UI."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import UsageError
from ._common import check_output_file, err, settings


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"--size {text!r}: expected WIDTHxHEIGHT, e.g. 140x40") from None
    if not (40 <= width <= 400 and 10 <= height <= 200):
        raise UsageError(f"--size {text!r}: width 40..400 and height 10..200")
    return width, height


def ui(
    ctx: typer.Context,
    run: Optional[str] = typer.Argument(None, help="Open this run (id or unique prefix) directly."),
    poll: float = typer.Option(0.5, "--poll", min=0.05, help="Seconds between looks for new events."),
    screenshot: Optional[Path] = typer.Option(
        None, "--screenshot", help="Do not open the UI: save an SVG screenshot of it to this file and exit."
    ),
    size: str = typer.Option("140x40", "--size", help="Terminal size of --screenshot, WIDTHxHEIGHT."),
    keys: Optional[list[str]] = typer.Option(
        None, "--key", help="With --screenshot: press these keys first (repeat), e.g. --key 2."
    ),
) -> None:
    """Open the terminal UI: runs, live score curves, event timeline with replay, transcripts, fork.

    The UI reads the database read-only and follows runs written by other
    processes live. Keys are shown in its footer: n new run, r run/resume,
    p pause, f fork, 1-4 tabs, m/d mark and diff prompts, q quit.

    Example: tprompt ui r-1a2b3c
    """
    db = settings(ctx).db_path
    if db.is_dir() or not db.exists():  # the UI reads; it must not create a database by a typo
        from ..stores import EventLog

        EventLog(db, readonly=True)  # raises the one-line error naming the path
    # Imported here so the other commands never load Textual.
    from ..tui import create_app, export_screenshot

    if screenshot is not None:
        check_output_file(screenshot, "--screenshot")
        path = export_screenshot(settings(ctx).db_path, screenshot, run, size=_size(size), keys=tuple(keys or ()))
        err.print(f"saved {path}")
        return
    app = create_app(settings(ctx).db_path, run, poll_interval=poll)
    app.run()
    if app.return_code:  # Textual printed what crashed; a crash is never a success
        raise typer.Exit(app.return_code)


def register(app: typer.Typer) -> None:
    app.command("ui")(ui)
