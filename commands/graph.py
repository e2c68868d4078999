"""``tprompt graph``, ``tprompt review`` and ``tprompt rescore``: the state machine, a person in it, a new evaluator."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table
from rich.text import Text

from ..errors import UsageError
from ..metric_specs import METRIC_NAMES
from ..stores.events import PromptCandidate
from ._common import JSON_OPTION, err, log_and_run, out, print_json, tprompt_cmd
from .run import execute, report


def graph(
    target_only: bool = typer.Option(False, "--target-only", help="The target-only (OPRO baseline) graph."),
    ascii_: bool = typer.Option(False, "--ascii", help="ASCII art instead of Mermaid source."),
    judge: bool = typer.Option(False, "--judge", help="The graph of a run with an LLM judge (score -> judge -> evaluate)."),
) -> None:
    """Print the Transfer-Prompting state machine as LangGraph draws it (Mermaid, or ASCII art).

    Example: tprompt graph > graph.mmd
    """
    from ..graph import draw

    out.print(Text(draw(transfer=not target_only, judge=judge, fmt="ascii" if ascii_ else "mermaid")), soft_wrap=True)


def review(
    ctx: typer.Context,
    run: str = typer.Argument(..., help="Run id (or a unique prefix) paused for review."),
    accept: bool = typer.Option(False, "--accept", help="Score the candidates as they are (after --drop/--edit/--add)."),
    drop: Optional[list[int]] = typer.Option(None, "--drop", metavar="N", help="Drop candidate N (repeat for several)."),
    edit: Optional[list[str]] = typer.Option(None, "--edit", metavar="N=TEXT", help="Replace candidate N's text."),
    add: Optional[list[str]] = typer.Option(None, "--add", metavar="TEXT", help="Add a candidate of your own."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run here once the review is recorded."),
    json_: bool = JSON_OPTION,
) -> None:
    """Show the candidates a run paused on (run --review), or accept, edit, drop or add to them.

    The decision is recorded as a step.revised event; `tprompt resume RUN` then scores what you kept.

    Example: tprompt review r-1a2b3c --drop 2 --edit "1=Think step by step, then answer." --accept --resume
    """
    from ..graph.review import max_prompt_chars, placeholder_check, record_review, revise, waiting_candidates

    with log_and_run(ctx, run, readonly=False) as (log, run_id):
        state = log.state(run_id)
        cands = waiting_candidates(state)
        if not (accept or drop or edit or add):
            _show(run_id, state.stage or "", state.in_flight or 0, cands, json_)
            return
        if not accept:
            raise UsageError("--drop, --edit and --add take effect with --accept", hint="add --accept")
        kept = revise(cands, drop=drop or [], edit=_edits(edit or [], len(cands)), add=add or [],
                      max_chars=max_prompt_chars(state), check=placeholder_check(state))
        record_review(log, run_id, kept)
        if not json_:
            err.print(f"review of {run_id} step {state.in_flight} recorded: {len(kept)} candidate(s) to score")
        if resume:
            report(execute(log, run_id, json_=json_), json_=json_)
        elif json_:
            print_json({"run_id": run_id, "step": state.in_flight, "candidates": [c.model_dump() for c in kept]})
        else:
            err.print(f"next: {tprompt_cmd()} resume {run_id}")


def _edits(items: list[str], n: int) -> dict[int, str]:
    out: dict[int, str] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip().isdigit():
            raise UsageError(f"bad --edit {item!r}", hint=f"use N=TEXT with N from 1 to {n}")
        out[int(key)] = text
    return out


def _show(run_id: str, stage: str, step: int, cands: list[PromptCandidate], json_: bool) -> None:
    if json_:
        print_json({"run_id": run_id, "stage": stage, "step": step, "candidates": [c.model_dump() for c in cands]})
        return
    table = Table(title=f"{run_id}: {stage} step {step} candidates, waiting for review")
    for col in ("N", "prompt", "text"):
        table.add_column(col)
    for i, c in enumerate(cands, 1):
        table.add_row(str(i), c.prompt_id, Text(c.text))
    out.print(table)
    err.print(f"decide with: {tprompt_cmd()} review {run_id} [--drop N] [--edit N=TEXT] [--add TEXT] --accept [--resume]")


def rescore(
    ctx: typer.Context,
    run: str = typer.Argument(..., help="Run id (or a unique prefix) to evaluate again."),
    weight: Optional[list[str]] = typer.Option(
        None, "--weight", metavar="NAME=W",
        help=f"Objective weight (repeat): {', '.join(METRIC_NAMES)} or any metric the run computes. "
        "Unnamed ones keep the run's.",
    ),
    metric: Optional[list[str]] = typer.Option(
        None, "--metric", metavar="NAME_OR_PATH",
        help="Add a metric plug-in (repeat), as on `tprompt run`: computed over the recorded answers.",
    ),
    judge: Optional[str] = typer.Option(None, "--judge", metavar="SPEC", help="Judge every recorded answer again with this judge model (judge calls only)."),
    rubric: Optional[Path] = typer.Option(None, "--rubric", metavar="FILE", help="Judge every recorded answer again on this rubric (a TOML or JSON file; judge calls only)."),
    accept_changed: bool = typer.Option(
        False, "--accept-changed",
        help="A task file or metric module changed since the run recorded it: rescore under the new content "
        "(the new run records the new hashes) instead of refusing.",
    ),
    json_: bool = JSON_OPTION,
) -> None:
    """Re-evaluate every candidate of a past run under new weights, metrics, judge or rubric, as a fork.

    The scorer's recorded answers are scored again (0 scorer calls); bests, top-k and the test table follow.
    New weights cost no model call; a new --judge or --rubric costs judge calls only (cached where identical).
    What was proposed, transferred and tested stays the run's own history.

    Example: tprompt rescore r-1a2b3c --weight accuracy=1 --metric token_f1
    """
    from ..config import load_rubric_file
    from ..graph.rescore import parse_weights, rescore_run
    from ..run_files import check_files, module_ref

    weights = parse_weights(weight or [])
    rubric_value = load_rubric_file(rubric) if rubric is not None else None
    if not weights and not metric and judge is None and rubric_value is None and not accept_changed:
        raise UsageError("give at least one --weight NAME=W, --metric NAME, --judge SPEC, --rubric FILE "
                         "or --accept-changed", hint="e.g. tprompt rescore RUN --weight accuracy=1")
    metrics = [module_ref(m, what="metric") for m in metric or ()]
    with log_and_run(ctx, run, readonly=False) as (log, run_id):
        config = log.state(run_id).config
        files = check_files(config, run_id=run_id, accept_changed=accept_changed).files if config else None
        new_id = rescore_run(log, run_id, weights, metrics=metrics, judge=judge, rubric=rubric_value, files=files)
        state = log.state(new_id)
        judge_calls = sum(n for a, _st, n, *_ in log.transcripts.spend([new_id]) if a == "judge")
    if not json_:
        cfg = state.config
        calls = "0 model calls" if judge is None and rubric_value is None else f"{judge_calls} judge call(s) paid, 0 scorer calls"
        names = ", ".join(cfg.metrics) if cfg and cfg.metrics else "the seven"
        err.print(f"rescored {state.parent_run_id} as {new_id} (weights {cfg.weights if cfg else {}}, metrics {names}"
                  + (f", judge {cfg.judge}, rubric {cfg.judge_rubric.ref}" if cfg and cfg.judge_rubric else "")
                  + f"); {calls}")
    report(state, json_=json_)


def register(app: typer.Typer) -> None:
    app.command("graph")(graph)
    app.command("review")(review)
    app.command("rescore")(rescore)

