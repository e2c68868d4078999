"""``tprompt ui [RUN]``: the Textual terminal UI."""

from __future__ import annotations

from typing import Optional

import typer

from ._common import settings


def ui(
    ctx: typer.Context,
    run: Optional[str] = typer.Argument(None, help="Open this run (id or unique prefix) directly."),
    poll: float = typer.Option(0.5, "--poll", min=0.05, help="Seconds between looks for new events."),
) -> None:
    """Open the terminal UI: runs, live score curves, event timeline with replay, transcripts, fork.

    The UI reads the database read-only and follows runs written by other
    processes live. Keys are shown in its footer: n new run, r run/resume,
    p pause, f fork, 1-4 tabs, m/d mark and diff prompts, q quit.

    Example: tprompt ui r-1a2b3c
    """
    # Imported here so the other commands never load Textual.
    from ..tui import create_app

    app = create_app(settings(ctx).db, run, poll_interval=poll)
    app.run()


def register(app: typer.Typer) -> None:
    app.command("ui")(ui)
