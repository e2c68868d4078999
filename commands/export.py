"""``tprompt export``: a run's best prompt, with its provenance, out of tprompt.

The export itself is built in the core (:func:`tprompt.export.export_prompt`),
the one rule behind ``RunState.best_prompt`` too.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.text import Text

from ..errors import UsageError
from ..export import FORMATS, STAGES, PromptExport, export_prompt, lost_to_original
from ._common import RUN_ARGUMENT, check_output_file, err, open_log, out, tprompt_cmd, write_atomically


def export(
    ctx: typer.Context,
    run: str = RUN_ARGUMENT,
    stage: Optional[str] = typer.Option(
        None, "--stage", metavar="STAGE",
        help="source or target. Default: target once it has a scored prompt, else source.",
    ),
    format: str = typer.Option(
        "text", "--format", metavar="FORMAT",
        help="text (the prompt alone), json (prompt and provenance; `run --prompt-file` reads it back), "
        "langchain (a ChatPromptTemplate, serialized with langchain_core.load.dumps) or langfuse (Langfuse's prompt "
        "JSON: {{var}} template, provenance in config, --alias as label; `run --prompt-file` reads it back).",
    ),
    to: Optional[str] = typer.Option(
        None, "--to", metavar="mlflow[:NAME]",
        help="Register the prompt as a new version in MLflow's prompt registry (MLFLOW_TRACKING_URI) under NAME "
        "(default tprompt-<target task>), provenance as tags. Needs pip install 'tprompt[mlflow]'.",
    ),
    alias: Optional[str] = typer.Option(
        None, "--alias", metavar="ALIAS", help="With --to mlflow: point this alias (e.g. production) at the new "
        "version. With --format langfuse: a label.",
    ),
    out_file: Optional[Path] = typer.Option(
        None, "--out", metavar="FILE", help="Write the export to FILE (replaced whole) instead of stdout."
    ),
) -> None:
    """Write the best prompt of a run with its provenance: run, seq, stage, metrics, models, tasks, version.

    Example: tprompt export r-1a2b3c --format json --out prompt.json
    """
    if to is not None:
        return _register(ctx, run, stage, to, alias)
    if format == "langfuse":
        return _write(ctx, run, stage, out_file, alias)
    if alias is not None:
        raise UsageError("--alias goes with --to mlflow or --format langfuse")
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
                   f"training objective {p['objective']:.3f}) of run {state.run_id}{where}"), soft_wrap=True)
    _warn_if_lost(found, state.run_id)


def _warn_if_lost(found: PromptExport, run_id: str) -> None:
    """A warning line when the exported prompt did worse than the original on the held-out test split."""
    lost = lost_to_original(found)
    if lost is not None:
        err.print(Text(f"warning: {lost}; the original may be the better prompt to ship ({tprompt_cmd()} show {run_id})"),
                  soft_wrap=True)


def _check_stage(stage: str | None) -> None:
    if stage is not None and stage not in STAGES:
        raise UsageError(f"unknown --stage {stage!r}", hint="use source or target")


def _register(ctx: typer.Context, run: str, stage: str | None, to: str, alias: str | None) -> None:
    registry, _, name = to.partition(":")
    if registry != "mlflow":
        raise UsageError(f"unknown registry in --to {to!r}", hint="use --to mlflow or --to mlflow:NAME")
    _check_stage(stage)
    with open_log(ctx) as log:
        state = log.state(log.resolve(run))
    found = export_prompt(state, stage)
    from ..export.registry import register_mlflow

    name, version = register_mlflow(found, name or None, alias)
    out.print(Text(f"prompts:/{name}/{version}"))
    err.print(Text(f"registered {found.prompt_id} of run {state.run_id} as MLflow prompt {name} version {version}"
                   + (f" (alias {alias})" if alias else "")), soft_wrap=True)
    _warn_if_lost(found, state.run_id)


def _write(ctx: typer.Context, run: str, stage: str | None, out_file: Path | None, alias: str | None) -> None:
    _check_stage(stage)
    if out_file is not None:
        check_output_file(out_file, "--out")
    with open_log(ctx) as log:
        state = log.state(log.resolve(run))
    found = export_prompt(state, stage)
    from ..export.registry import langfuse_prompt

    text = json.dumps(langfuse_prompt(found, labels=[alias] if alias else None), indent=2, ensure_ascii=False) + "\n"
    if out_file is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_atomically(out_file, text)
    err.print(Text(f"exported {found.prompt_id} of run {state.run_id} as a Langfuse prompt"
                   + (f" to {out_file}" if out_file else "")), soft_wrap=True)
    _warn_if_lost(found, state.run_id)


def register(app: typer.Typer) -> None:
    app.command("export")(export)
