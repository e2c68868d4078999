"""``tprompt export``: a run's best prompt, with its provenance, out of tprompt.

The export itself is built in the core (:func:`tprompt.export.export_prompt`),
the one rule behind ``RunState.best_prompt`` too.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.text import Text

from ..errors import UsageError
from ..export import FORMATS, STAGES, export_prompt
from ._common import check_output_file, err, open_log, write_atomically


def export(
    ctx: typer.Context,
    run: str = typer.Argument(..., help="Run id (or a unique prefix)."),
    stage: Optional[str] = typer.Option(
        None, "--stage", metavar="STAGE",
        help="source or target. Default: target once it has a scored prompt, else source.",
    ),
    format: str = typer.Option(
        "text", "--format", metavar="FORMAT",
        help="text (the prompt alone), json (prompt and provenance; `run --prompt-file` reads it back) or "
        "langchain (a ChatPromptTemplate, serialized with langchain_core.load.dumps).",
    ),
    out_file: Optional[Path] = typer.Option(
        None, "--out", metavar="FILE", help="Write the export to FILE (replaced whole) instead of stdout."
    ),
) -> None:
    """Write the best prompt of a run with its provenance: run, seq, stage, metrics, models, tasks, version.

    Example: tprompt export r-1a2b3c --format json --out prompt.json
    """
    if format not in FORMATS:
        raise UsageError(f"unknown --format {format!r}", hint="use " + ", ".join(FORMATS))
    if stage is not None and stage not in STAGES:
        raise UsageError(f"unknown --stage {stage!r}", hint="use source or target")
    if out_file is not None:
        check_output_file(out_file, "--out")
    with open_log(ctx) as log:
        state = log.state(log.resolve(run))
    found = export_prompt(state, stage)
    text = found.render(format)
    if out_file is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_atomically(out_file, text)
    p = found.provenance
    where = f" to {out_file}" if out_file is not None else ""
    err.print(Text(f"exported {found.prompt_id} ({p['stage']} stage, step {p['step']}, seq {p['seq']}, "
                   f"objective {p['objective']:.3f}) of run {state.run_id}{where}"), soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("export")(export)
