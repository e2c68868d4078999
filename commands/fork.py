"""``tprompt fork RUN --at SEQ``: a new run branching off any event of another.

The fork's history is the parent's events up to ``SEQ``, read through (not
copied), followed by its own ``run.forked`` event.
"""

from __future__ import annotations

from typing import Any

import typer

from ..errors import StoreError
from ..stores import EventLog
from ._common import JSON_OPTION, err, open_log, out, print_json, settings


def fork_run(
    log: EventLog,
    run_id: str,
    at_seq: int,
    *,
    target_task: str | None = None,
    config_overrides: dict[str, Any] | None = None,
    from_prompt_id: str | None = None,
) -> str:
    """Fork ``run_id`` (id or unique prefix) at ``at_seq``; returns the new run's id.

    The fork starts from the parent's state after ``at_seq``: its config is
    that state's config updated with ``config_overrides``, and its target task
    is ``target_task`` or the state's.

    Raises:
        UnknownRun: no such run.
        SeqOutOfRange: ``at_seq`` is not in the run's history.
    """
    parent = log.resolve(run_id)
    state = log.state(parent, upto=at_seq)
    config = dict(state.config)
    if config_overrides:
        config.update(config_overrides)
    return log.fork(
        parent,
        at_seq,
        config=config,
        target_task=target_task or state.target_task or "",
        from_prompt_id=from_prompt_id,
    )


def fork(
    ctx: typer.Context,
    run: str = typer.Argument(..., help="Run id (or a unique prefix) to fork."),
    at: int = typer.Option(..., "--at", help="Fork after this seq of the run's history."),
    json_: bool = JSON_OPTION,
) -> None:
    """Start a new run whose history is RUN's events up to seq AT; prints the new run id.

    Example: tprompt fork r-1a2b3c --at 12
    """
    path = settings(ctx).db
    # Opening a missing file for writing would create an empty database.
    if not path.exists():
        raise StoreError(f"no tprompt database at {path}", hint="pass --db PATH or set TPROMPT_DB")
    with open_log(ctx, readonly=False) as log:
        parent = log.resolve(run)
        new_id = fork_run(log, parent, at)
    if json_:
        print_json({"run_id": new_id, "parent_run_id": parent, "parent_seq": at})
        return
    out.print(new_id)
    if err.is_terminal:
        err.print(f"forked {parent} at seq {at}; `tprompt replay {new_id}` shows it")


def register(app: typer.Typer) -> None:
    app.command("fork")(fork)
