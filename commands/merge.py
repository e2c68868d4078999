"""``tprompt merge``: union tprompt databases (shards of one experiment, runs made on other machines) into one."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import typer
from rich.text import Text

from .._text import printable
from ..stores.merge import merge_files
from ._common import JSON_OPTION, out, print_json


def merge(
    sources: list[Path] = typer.Argument(..., help="The tprompt databases to merge (read, never written)."),
    into: Path = typer.Option(..., "--into", help="The database to merge into (created if missing)."),
    json_: bool = JSON_OPTION,
) -> None:
    """Merge tprompt databases into one: runs, events, transcripts, bodies, cache rows and experiments, by id.

    All or nothing, and merging the same file again adds nothing. A run in two files whose events
    differ is refused; a run whose log in one file is a prefix of the other's gets the longer log.
    Pause requests and run leases stay with their files. Prints what was added.

    Example: tprompt merge shard-1.db shard-2.db --into all.db
    """
    counts = merge_files(sources, into)
    if json_:
        print_json({"into": str(into), **asdict(counts)})
        return
    out.print(Text(f"{printable(str(into))}: {counts.describe()}"))


def register(app: typer.Typer) -> None:
    app.command("merge")(merge)
