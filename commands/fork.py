"""``tprompt fork``: a new run branching off any event, or any source prompt, of another.

The fork's history is the parent's events up to the fork point, read through
(not copied), followed by its own ``run.forked`` event. Unless ``--no-start``,
the fork then runs here, like ``tprompt run``.
"""

from __future__ import annotations

from typing import Any, Optional

import typer

from ..errors import StoreError
from ..graph import open_fork
from ._common import JSON_OPTION, err, open_log, out, print_json, settings, tprompt_cmd
from ._model_options import (
    BASE_URL_OPTION,
    CONCURRENCY_OPTION,
    MODEL_OPTION,
    PRECISION_OPTION,
    REQUEST_TIMEOUT_OPTION,
    base_url_setting,
    check_model_options,
)
from .run import execute, report


def fork(
    ctx: typer.Context,
    run: str = typer.Argument(..., help="Run id (or a unique prefix) to fork."),
    at: Optional[int] = typer.Option(None, "--at", help="Fork after this seq of the run's history. Default: after the source stage, whose top-k prompts then seed the target stage (the transfer)."),
    from_prompt: Optional[str] = typer.Option(
        None, "--from-prompt", help="Fork from this source prompt (id or prefix): the target stage starts from it."
    ),
    target: Optional[str] = typer.Option(None, "--target", help="Target task of the fork (default: the parent's)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Steps per stage."),
    target_steps: Optional[int] = typer.Option(None, "--target-steps", help="Steps of the target stage."),
    candidates: Optional[int] = typer.Option(None, "--candidates", help="Candidates per step."),
    examples: Optional[int] = typer.Option(None, "--examples", help="Training examples per candidate score."),
    test_examples: Optional[int] = typer.Option(None, "--test-examples", help="Held-out examples in the final table."),
    model: Optional[str] = MODEL_OPTION,
    proposer: Optional[str] = typer.Option(None, "--proposer", help="Model spec of the proposer."),
    scorer: Optional[str] = typer.Option(None, "--scorer", help="Model spec of the scorer."),
    judge: Optional[str] = typer.Option(None, "--judge", metavar="SPEC", help="Model spec of the LLM judge (another judge for a run whose judge's replies could not be read)."),
    base_url: Optional[list[str]] = BASE_URL_OPTION,
    precision: Optional[str] = PRECISION_OPTION,
    concurrency: Optional[int] = CONCURRENCY_OPTION,
    request_timeout: Optional[float] = REQUEST_TIMEOUT_OPTION,
    no_start: bool = typer.Option(False, "--no-start", help="Only create the fork; run it later with `tprompt resume`."),
    json_: bool = JSON_OPTION,
) -> None:
    """Branch a run at any event or from any source prompt, onto a (possibly different) target; prints the new id.

    Without --at or --from-prompt, the fork starts after the source stage and transfers its top-k prompts.

    Example: tprompt fork r-1a2b3c --target medqa_usmle --steps 3
    """
    check_model_options(concurrency, request_timeout)
    url = base_url_setting(base_url)
    path = settings(ctx).db_path
    # Opening a missing file for writing would create an empty database.
    if not path.exists():
        raise StoreError(f"no tprompt database at {path}", hint="pass --db PATH or set TPROMPT_DB")
    overrides: dict[str, Any] = {}
    if model is not None:
        overrides["proposer"] = overrides["scorer"] = model
    for key, value in (
        ("target_task", target), ("steps", steps), ("target_steps", target_steps), ("candidates", candidates),
        ("examples", examples), ("test_examples", test_examples), ("proposer", proposer), ("scorer", scorer), ("judge", judge),
        ("base_url", url), ("precision", precision), ("concurrency", concurrency), ("request_timeout", request_timeout),
    ):
        if value is not None:
            overrides[key] = value
    with open_log(ctx, readonly=False) as log:
        parent = log.resolve(run)
        new_id, resources = open_fork(
            log, parent, at_seq=at, from_prompt_id=from_prompt, overrides=overrides,
            validate=not no_start or bool(overrides),
        )
        point = log.run(new_id).parent_seq
        if no_start:
            if json_:
                print_json({"run_id": new_id, "parent_run_id": parent, "parent_seq": point})
            else:
                out.print(new_id)
                if err.is_terminal:
                    err.print(f"forked {parent} at seq {point}; `{tprompt_cmd()} resume {new_id}` runs it")
            return
        if not json_:
            out.print(new_id)
            err.print(f"forked {parent} at seq {point}; running it")
        state = execute(log, new_id, json_=json_, resources=resources)  # opened once, by open_fork
    if json_:
        report(state, json_=True)
    else:
        report(state, json_=False)


def register(app: typer.Typer) -> None:
    app.command("fork")(fork)
