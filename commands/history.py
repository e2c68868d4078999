"""Reading the log: ``runs``, ``compare`` (in :mod:`.compare`), ``events``, ``replay`` (state at a seq)."""

from __future__ import annotations

from typing import Any, Optional

import typer
from rich.table import Table
from rich.text import Text

from .._text import printable
from ..errors import UsageError
from ..stores import RunState
from ..stores.listing import run_summaries
from ._common import JSON_OPTION, RUN_ARGUMENT, err, fmt_num, log_and_run, open_log, out, print_json, settings, shorten
from ._model_options import CONCURRENCY_OPTION, REQUEST_TIMEOUT_OPTION, check_model_options


def runs(ctx: typer.Context, json_: bool = JSON_OPTION) -> None:
    """List the runs in the database, oldest first.

    Example: tprompt runs --json
    """
    if not settings(ctx).db_path.exists():
        if json_:
            print_json([])
        else:
            err.print(f"no runs yet: {settings(ctx).db_path} does not exist")
        return
    with open_log(ctx) as log:
        # One stored row per run (kept by the run's writer): no run's history is read.
        data: list[dict[str, Any]] = [
            {
                "run_id": s.run_id,
                "parent_run_id": s.parent_run_id,
                "parent_seq": s.parent_seq,
                "status": s.status,
                "name": s.name,
                "source_tasks": list(s.source_tasks),
                "target_task": s.target_task or None,
                "events": s.last_seq,
                "best_objective": s.best_objective,
                "test_objective": s.test_objective,
                "original_test_objective": s.original_test_objective,
                "created_at": s.created_at,
            }
            for s in run_summaries(log)
        ]
    if json_:
        print_json(data)
        return
    table = Table(title=f"runs in {settings(ctx).db_path}")
    for col in ("run", "name", "status", "source → target", "events", "best train obj.", "test", "parent", "created"):
        table.add_column(col)
    for d in data:
        parent = f"{d['parent_run_id']}@{d['parent_seq']}" if d["parent_run_id"] else ""
        table.add_row(
            d["run_id"],
            Text(d["name"] or ""),
            d["status"],
            Text(f"{', '.join(d['source_tasks'])} → {d['target_task'] or ''}"),
            str(d["events"]),
            fmt_num(d["best_objective"]),
            "" if d["test_objective"] is None else fmt_num(d["test_objective"]),
            parent,
            d["created_at"][:19].replace("T", " "),
        )
    out.print(table)


def events(
    ctx: typer.Context,
    run: str = RUN_ARGUMENT,
    json_: bool = JSON_OPTION,
) -> None:
    """List a run's events (its fork ancestors' included): seq, type, payload.

    Example: tprompt events r-1a2b3c --json
    """
    with log_and_run(ctx, run) as (log, run_id):
        rows = list(log.events(run_id))
    if json_:
        print_json(
            [
                {
                    "run_id": e.run_id,
                    "seq": e.seq,
                    "event_id": e.event_id,
                    "type": e.type,
                    "schema_version": e.schema_version,
                    "created_at": e.created_at.isoformat(),
                    "payload": e.event.model_dump(mode="json"),
                }
                for e in rows
            ]
        )
        return
    # Plain aligned lines, not a rich Table: a table measures every cell of every
    # row before it prints one, which made a 40k-event run take seconds per 10k rows.
    inherited = any(e.run_id != run_id for e in rows)
    seq_w = max(3, len(str(rows[-1].seq)) if rows else 3)
    type_w = max([4, *(len(e.type) for e in rows)])
    run_w = max([8, *(len(e.run_id) for e in rows)]) if inherited else 0

    def line(seq: str, type_: str, origin: str, payload: str) -> str:
        cells = [seq.rjust(seq_w), type_.ljust(type_w)] + ([origin.ljust(run_w)] if inherited else []) + [payload]
        return "  ".join(cells)

    room = max(20, out.width - seq_w - type_w - (run_w + 2 if inherited else 0) - 4)
    body = [
        line(str(e.seq), e.type, "" if e.run_id == run_id else e.run_id,
             printable(shorten(e.event.model_dump_json(exclude={"type"}), room)))
        for e in rows
    ]
    out.print(Text(f"events of {run_id}", style="bold"))
    out.print(Text(line("seq", "type", "from run", "payload"), style="bold"))
    out.file.write("\n".join(body) + ("\n" if body else ""))
    out.file.flush()


def replay(
    ctx: typer.Context,
    run: str = RUN_ARGUMENT,
    to: Optional[int] = typer.Option(None, "--to", help="Show the state after this seq (default: the last)."),
    rerun: bool = typer.Option(
        False,
        "--rerun",
        help="Re-execute the run from its config in a scratch copy of the database (same LLM cache) "
        "and check that it produces the same events. The database is not written.",
    ),
    concurrency: Optional[int] = CONCURRENCY_OPTION,
    request_timeout: Optional[float] = REQUEST_TIMEOUT_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """Show a run's state as it was after any event: stage, step, history, best prompts.

    Example: tprompt replay r-1a2b3c --to 12
    """
    check_model_options(concurrency, request_timeout)
    if (concurrency is not None or request_timeout is not None) and not rerun:
        raise UsageError("--concurrency and --request-timeout apply to --rerun only", hint="add --rerun")
    if rerun:
        from ..graph import rerun_check
        from ..graph.resources import ExecutionOptions
        from ..run_files import check_files

        with log_and_run(ctx, run) as (log, run_id):
            config = log.state(run_id).config
            if config is not None:
                check_files(config, run_id=run_id)
            same, why = rerun_check(log, run_id,
                                    options=ExecutionOptions(concurrency=concurrency, request_timeout=request_timeout))
        if json_:
            print_json({"run_id": run_id, "same": same, "detail": why})
        else:
            (out if same else err).print(Text(f"{run_id}: {why}"))
        raise typer.Exit(0 if same else 1)
    with log_and_run(ctx, run) as (log, run_id):
        state = log.state(run_id, upto=to)
    if json_:
        print_json(state_json(state))
        return
    print_state(state)


def state_json(state: RunState) -> dict:
    data = state.model_dump(mode="json")
    data["history"] = {
        stage: [s.model_dump(mode="json") for s in state.history(stage)] for stage in ("source", "target")
    }
    return data


def print_state(state: RunState) -> None:
    out.print(
        f"[bold]{state.run_id}[/] at seq {state.last_seq}: status [bold]{state.status}[/],"
        f" stage {state.stage or '-'}, step {state.step}"
    )
    out.print(Text(f"source tasks: {', '.join(state.source_tasks) or '-'}   target task: {state.target_task or '-'}"))
    if state.parent_run_id:
        out.print(f"forked from {state.parent_run_id} at seq {state.parent_seq}")
    for stage in ("source", "target"):
        hist = state.history(stage)
        if not hist:
            continue
        table = Table(title=f"{stage} history (best last)")
        table.add_column("prompt")
        table.add_column("step", justify="right")
        table.add_column("task")
        table.add_column("objective", justify="right")
        table.add_column("accuracy", justify="right")
        table.add_column("text", overflow="fold")
        for s in hist:
            table.add_row(
                s.prompt_id, str(s.step), s.task, fmt_num(s.objective), fmt_num(s.metrics.get("accuracy")), Text(shorten(s.text, 90))
            )
        out.print(table)
    if state.pending:
        out.print(f"{len(state.pending)} candidate(s) proposed in the step in flight")
    if state.error:
        out.print(Text(f"error: {state.error}"))


def register(app: typer.Typer) -> None:
    from .compare import compare  # reads the log too: registered with `runs`

    app.command("runs")(runs)
    app.command("compare")(compare)
    app.command("events")(events)
    app.command("replay")(replay)
