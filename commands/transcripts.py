"""``tprompt transcript``: every model call of a run, or one call in full."""

from __future__ import annotations

import json
from typing import Optional

import typer
from rich.table import Table
from rich.text import Text

from ..errors import UsageError
from ..evaluator.program import prompt_names
from ..stores.transcripts import TranscriptRow
from ._common import JSON_OPTION, RUN_ARGUMENT, fmt_num, log_and_run, out, print_json, shorten


def transcript(
    ctx: typer.Context,
    run: str = RUN_ARGUMENT,
    agent: Optional[str] = typer.Option(None, "--agent", help="Only calls of this agent (proposer, scorer, ...)."),
    call: Optional[str] = typer.Option(None, "--call", help="Print this call in full (id or unique prefix)."),
    prompt: Optional[str] = typer.Option(
        None, "--prompt", metavar="NAME",
        help="Only the calls of a program's run that carry its prompt NAME (docs/programs.md); a prompt column "
        "names them."),
    json_: bool = JSON_OPTION,
) -> None:
    """List a run's model calls (its fork ancestors' up to the fork point included), or print one in full.

    Example: tprompt transcript r-1a2b3c --agent proposer
    """
    with log_and_run(ctx, run) as (log, run_id):
        segments = [(s.run_id, s.first_seq, s.last_seq) for s in log.lineage(run_id)]
        store = log.transcripts
        if call:
            row = store.call(call)
            # A parent's calls after the fork point are not part of this run's history.
            if row is None or row.call_id not in {r.call_id for r in store.rows(segments)}:
                raise UsageError(
                    f"no call {call!r} in the history of run {run_id}",
                    hint=f"`tprompt transcript {run_id}` lists its calls",
                )
            request = json.loads(store.body(row.request_hash) or "{}")
            response = store.body(row.response_hash)
            _show_call(row, request, response, json_)
            return
        rows = store.rows(segments, agent=agent)
        named: dict[str, list[str]] = {}
        if prompt is not None:
            named = {r.call_id: prompt_names(store.body(r.request_hash)) for r in rows}
            rows = [r for r in rows if prompt in named[r.call_id]]
    if json_:
        print_json([_row_json(r) | ({"prompts": named[r.call_id]} if prompt is not None else {}) for r in rows])
        return
    table = Table(title=f"model calls of {run_id}" + (f" (agent {agent})" if agent else ""))
    # Columns that would be empty for every row are left out, so the table fits a terminal.
    show_run = any(r.run_id != run_id for r in rows)
    show_step = any(r.step for r in rows)
    columns = [("call", "left")] + ([("run", "left")] if show_run else []) + [("seq", "right")]
    columns += ([("step", "left")] if show_step else []) + [("agent", "left"), ("model", "left"), ("kind", "left"),
                ("tokens in/out", "right"), ("s", "right"), ("cache", "left"), ("status", "left")]
    columns += [("prompt", "left")] if prompt is not None else []
    for col, justify in columns:
        # Ids and names are what a user copies: never wrapped.
        table.add_column(col, justify=justify, no_wrap=col in ("call", "run", "agent"))  # type: ignore[arg-type]
    for r in rows:
        tokens = f"{r.prompt_tokens if r.prompt_tokens is not None else '-'}/{r.completion_tokens if r.completion_tokens is not None else '-'}"
        cells: list[str | Text] = [r.call_id, *([r.run_id or ""] if show_run else []), "" if r.seq is None else str(r.seq)]
        cells += ([r.step or ""] if show_step else []) + [
            r.agent, r.model, r.kind, tokens, fmt_num(r.latency_s, 2),
            "hit" if r.cache_hit else "miss", Text(shorten(r.error, 50)) if r.error else "ok",
        ] + ([Text(", ".join(named[r.call_id]))] if prompt is not None else [])
        table.add_row(*cells)
    out.print(table)
    calls = sum(not r.cache_hit for r in rows)
    out.print(f"{len(rows)} calls, {calls} sent to a model, {len(rows) - calls} from the cache")


def _row_json(r: TranscriptRow) -> dict:
    return {
        "call_id": r.call_id, "run_id": r.run_id, "seq": r.seq, "step": r.step, "agent": r.agent,
        "model": r.model, "kind": r.kind, "cache_key": r.cache_key, "prompt_tokens": r.prompt_tokens,
        "completion_tokens": r.completion_tokens, "latency_s": r.latency_s, "cache_hit": r.cache_hit,
        "cost": r.cost, "error": r.error, "created_at": r.created_at,
    }


def _show_call(row: TranscriptRow, request: dict, response: str | None, json_: bool) -> None:
    if json_:
        data = _row_json(row)
        data["request"] = request
        data["response"] = json.loads(response) if response and row.kind == "options" else response
        print_json(data)
        return
    out.print(Text(f"call {row.call_id}  run {row.run_id}  seq {row.seq if row.seq is not None else '-'}"
                   f"  step {row.step or '-'}  agent {row.agent}  model {row.model}  ({row.kind})", style="bold"))
    params = {k: v for k, v in request.items() if k not in ("messages", "kind", "model", "options")}
    out.print(Text(", ".join(f"{k}={v}" for k, v in params.items())))
    out.print(Text(f"tokens in/out {row.prompt_tokens}/{row.completion_tokens}, latency {row.latency_s:.3f} s, "
                   f"{'cache hit' if row.cache_hit else 'model call'}" + (f", cost {row.cost}" if row.cost is not None else "")))
    for role, content in request.get("messages", []):
        out.rule(Text(role))
        out.print(Text(content))
    out.rule(Text("response"))
    if row.error:
        out.print(Text(f"failed: {row.error}", style="red"))
    elif row.kind == "options" and response:
        for option, prob in zip(request.get("options", []), json.loads(response)):
            out.print(Text(f"{request.get('answer_prefix', '')}{option}: {prob:.4f}"))
    else:
        out.print(Text(response or ""))


def register(app: typer.Typer) -> None:
    app.command("transcript")(transcript)
