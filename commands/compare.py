"""Runs side by side on their target task's held-out test split (``compare``): read from their events, no call."""

from __future__ import annotations

from typing import Any

import typer
from rich.text import Text

from ..errors import UsageError
from ..stores import RunState
from ._common import JSON_OPTION, err, fmt_num, open_log, out, print_json, shorten, tprompt_cmd
from ._tables import MetricRow, metric_table


def compare(
    ctx: typer.Context,
    runs: list[str] = typer.Argument(..., metavar="RUN", help="Two or more run ids (or unique prefixes) of one target task."),
    json_: bool = JSON_OPTION,
) -> None:
    """Runs side by side on the same held-out split: each run's best prompt's test metrics and objective.

    Read from the runs' recorded test results (no model call). A run not tested yet says so.

    Example: tprompt compare r-1a2b3c r-4d5e6f --json
    """
    if len(runs) < 2:
        raise UsageError("compare needs at least two runs", hint="e.g. tprompt compare RUN RUN; see them with tprompt runs")
    with open_log(ctx) as log:
        ids = [log.resolve(r) for r in runs]
        twice = next((i for n, i in enumerate(ids) if i in ids[:n]), None)
        if twice is not None:
            raise UsageError(f"run {twice} is given twice", hint="give each run once")
        states = [log.state(i) for i in ids]
    targets = {s.target_task for s in states}
    if len(targets) > 1:
        named = ", ".join(f"{s.run_id} on {s.target_task}" for s in states)
        raise UsageError(f"the runs have different target tasks ({named}): their test splits differ",
                         hint="compare runs of one target task")
    target = next(iter(targets)) or ""
    data = [_entry(s) for s in states]
    if json_:
        print_json({"target_task": target, "runs": data})
        return
    _print(target, data)


def _entry(state: RunState) -> dict[str, Any]:
    cfg = state.config
    best, original = state.tested.get("best_target"), state.tested.get("original")
    entry: dict[str, Any] = {"run_id": state.run_id, "name": state.name, "status": state.status,
                             "seed": cfg.seed if cfg else None, "test_examples": cfg.test_examples if cfg else None}
    if best is None:
        return {**entry, "tested": None}
    return {**entry, "tested": {
        "prompt_id": best.prompt_id, "prompt": best.text, "n_examples": best.n_examples, "metrics": best.metrics,
        "objective": best.objective, "undefined": best.undefined,
        "original_objective": original.objective if original is not None else None,
    }}


def _print(target: str, data: list[dict[str, Any]]) -> None:
    tested = [d for d in data if d["tested"] is not None]
    if tested:
        sizes = sorted({d["tested"]["n_examples"] for d in tested})
        rows = [MetricRow(d["run_id"], d["tested"]["metrics"], d["tested"]["objective"], d["tested"]["undefined"])
                for d in tested]
        title = f"{target}: held-out test split ({'/'.join(map(str, sizes))} examples), each run's best target prompt"
        out.print(metric_table(title, rows, first="run"))
    for d in data:
        t = d["tested"]
        if t is None:
            out.print(Text(f"{d['run_id']}: no test result yet (status {d['status']}); "
                           f"finish it with {tprompt_cmd()} resume {d['run_id']}"), soft_wrap=True)
            continue
        gain = "" if t["original_objective"] is None else \
            f"; the original {fmt_num(t['original_objective'])}, {t['objective'] - t['original_objective']:+.3f}"
        out.print(Text.assemble((f"{d['run_id']} ({t['prompt_id']}{gain}): ", "bold"), shorten(t["prompt"], 300)),
                  soft_wrap=True)
    draws = {(d["seed"], d["test_examples"]) for d in tested}
    if len(draws) > 1:
        err.print(Text("note: the runs drew different test rows (seed, test examples: "
                       + ", ".join(f"{d['run_id']} {d['seed']}, {d['test_examples']}" for d in tested)
                       + "); give runs the same --seed and --test-examples to compare them on the same rows"),
                  soft_wrap=True)


__all__ = ("compare",)
