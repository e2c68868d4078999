"""Experiments and reports: ``experiment CONFIG`` and ``report (RUN | EXPERIMENT)``."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..errors import TPromptError, UnknownRun, UsageError
from ..experiments.grid import (
    ARM_LABELS,
    CellRun,
    Experiment,
    find_experiment,
    load_experiment_file,
    plan_experiment,
    run_experiment,
)
from ..experiments.parallel import CellOutcome
from ..graph.resources import ExecutionOptions, RunResources
from ..stores import EventLog, RunState
from ._common import JSON_OPTION, err, open_log, out, prepare_output_dir, print_json, tprompt_cmd
from ._model_options import CONCURRENCY_OPTION, REQUEST_TIMEOUT_OPTION, check_model_options
from .run import execute as execute_run


def _cell_row(cell_run: CellRun, state: RunState | None) -> dict[str, Any]:
    calls = state.scorer_calls if state else {}
    return {
        "cell": cell_run.cell.key,
        "arm": cell_run.arm,
        "seed": cell_run.seed,
        "run_id": state.run_id if state else None,
        "status": state.status if state else "not started",
        "train_scorer_calls": calls.get("source", 0) + calls.get("target", 0),
        "budget": cell_run.cell.budget,
    }


def _execute_with_progress(json_: bool, options: ExecutionOptions):
    def execute(log: EventLog, run_id: str, cell_run: CellRun, index: int, total: int, /, *,
                resources: RunResources | None = None) -> RunState:
        if not json_:
            err.print(f"[{index}/{total}] {cell_run.cell.key}  {ARM_LABELS[cell_run.arm]}  seed {cell_run.seed}  ({run_id})")
        return execute_run(
            log, run_id, json_=json_, on_pause="pausing: rerun the same `tprompt experiment` command to continue",
            options=options, resources=resources,
        )

    return execute


def experiment(
    ctx: typer.Context,
    config: Path = typer.Argument(..., help="Experiment file (TOML, YAML or JSON): the grid to run."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate and list the runs without running anything."),
    concurrency: Optional[int] = CONCURRENCY_OPTION,
    request_timeout: Optional[float] = REQUEST_TIMEOUT_OPTION,
    workers: int = typer.Option(
        1, "--workers", help="Run up to N cells at once, each in its own process on the same database file. "
        "Ctrl-C pauses them all; rerunning continues them all."
    ),
    ray: bool = typer.Option(
        False, "--ray", help="Run each cell as a task on a Ray cluster: the one at RAY_ADDRESS, or a new local "
        "Ray. Needs the extra: pip install 'tprompt[ray]'."
    ),
    ray_address: Optional[str] = typer.Option(
        None, "--ray-address", metavar="ADDRESS", help="Join the Ray cluster at ADDRESS (auto, HOST:PORT or "
        "ray://HOST:PORT) and run each cell as a task there (implies --ray)."
    ),
    json_: bool = JSON_OPTION,
) -> None:
    """Run a grid of Transfer-Prompting runs against the original prompt and target-only optimization.

    Every cell (model x source tasks x target x budget) gets, per seed, a target-only run and a
    Transfer-Prompting run with the same budget of training scorer calls; each is a normal run in
    the database. Rerunning the same command resumes: finished runs are skipped, unfinished ones
    continue where they stopped. Then `tprompt report NAME` writes the tables and plots.
    The models are the file's; --concurrency and --request-timeout override how they are
    called in this execution (in the file: run.concurrency, run.request_timeout, or per model row).

    With --workers N, up to N cells run at once, each a `tprompt resume RUN` process.
    With --ray (or --ray-address ADDRESS), every cell is a Ray task that runs in a shard on its
    worker's local disk and ships it back as it goes; this database stays the one that is written.

    Example: tprompt experiment examples/experiment-smollm2.toml --workers 2
    """
    check_model_options(concurrency, request_timeout)
    if workers < 1:
        raise UsageError(f"--workers {workers}: give a number of cells to run at once, at least 1",
                         hint="--workers 1 (the default) runs them one after another")
    on_ray = ray or ray_address is not None
    if on_ray and workers != 1:
        raise UsageError("--ray and --workers cannot be combined: on Ray every cell is a task and the cluster "
                         "decides how many run at once", hint="drop --workers")
    if on_ray and not dry_run:
        from ..experiments.ray_cells import import_ray

        import_ray()  # no Ray installed: one line saying how to get it, before anything is written
    planned = plan_experiment(load_experiment_file(config), where=str(config))
    if dry_run:
        rows = [_cell_row(r, None) | {"name": r.name} for r in planned.runs]
        if json_:
            print_json({"name": planned.name, "runs": rows})
        else:
            _print_wide([_runs_table(planned, [(r, None) for r in planned.runs])])
        return

    def skipped(cell_run: CellRun, state: RunState, index: int, total: int) -> None:
        if not json_:
            err.print(f"[{index}/{total}] {cell_run.cell.key}  {ARM_LABELS[cell_run.arm]}  seed {cell_run.seed}: "
                      f"done ({state.run_id})")

    with open_log(ctx, readonly=False, create=True) as log:
        if not json_:
            err.print(f"experiment {planned.name}: {len(planned.runs)} runs in {log.path}")
        failures: list[CellOutcome] = []
        if on_ray:
            recorded, outcomes = _run_cells(log, planned, json_, skipped, ray_address=ray_address, ray=True,
                                            concurrency=concurrency, request_timeout=request_timeout)
            failures = [o for o in outcomes if o.failed]
        elif workers == 1:
            options = ExecutionOptions(concurrency=concurrency, request_timeout=request_timeout)
            recorded, _visited = run_experiment(log, planned, execute=_execute_with_progress(json_, options),
                                                on_skip=skipped, options=options)
        else:
            recorded, outcomes = _run_cells(log, planned, json_, skipped, workers=workers,
                                            concurrency=concurrency, request_timeout=request_timeout)
            failures = [o for o in outcomes if o.failed]
        states = [(r, _state_of(log, r)) for r in recorded.runs]
    done = sum(1 for _, s in states if s is not None and s.status == "completed")
    if json_:
        print_json(
            {
                "experiment_id": recorded.experiment_id,
                "name": recorded.name,
                "completed": done,
                "total": len(states),
                "runs": [_cell_row(r, s) for r, s in states],
            }
        )
        _raise_failures(failures, config)
        return
    _print_wide([_runs_table(recorded, states)])
    _raise_failures(failures, config)
    if done == len(states):
        out.print(f"experiment [bold]{recorded.name}[/] complete; write the report with: "
                  f"{tprompt_cmd()} report {shlex.quote(recorded.name)} --out DIR")
    else:
        out.print(f"experiment [bold]{recorded.name}[/]: {done}/{len(states)} runs complete; "
                  f"continue with: {tprompt_cmd()} experiment {shlex.quote(str(config))}")


def _run_cells(
    log: EventLog, planned: Experiment, json_: bool, skipped: Any, *, workers: int = 1, ray: bool = False,
    ray_address: str | None = None, concurrency: int | None = None, request_timeout: float | None = None,
) -> tuple[Experiment, list[CellOutcome]]:
    """The grid in up to ``workers`` child processes, or as tasks on a Ray cluster, with their progress on stderr."""

    def argv(run_id: str) -> list[str]:
        cmd = [sys.executable, "-m", "tprompt.cli", "--db", str(log.path), "resume", run_id, "--json"]
        if concurrency is not None:
            cmd += ["--concurrency", str(concurrency)]
        if request_timeout is not None:
            cmd += ["--request-timeout", str(request_timeout)]
        return cmd

    def label(cell_run: CellRun, index: int, total: int) -> str:
        return f"[{index}/{total}] {cell_run.cell.key}  {ARM_LABELS[cell_run.arm]}  seed {cell_run.seed}"

    board = _Board(label) if err.is_terminal and not json_ else None

    def say(line: str) -> None:
        if not json_:
            err.print(Text(line), soft_wrap=True)

    def started(cell_run: CellRun, run_id: str, index: int, total: int, where: str = "") -> None:
        if board is None:
            say(f"{label(cell_run, index, total)}  ({run_id}): started" + (f" on node {where}" if where else ""))

    def events(index: int, cell_run: CellRun, new: list[Any], state: RunState, total: int) -> None:
        from ._progress import plain_line

        if board is None:
            for stored in new:
                line = plain_line(stored, state)
                if line:
                    say(f"{label(cell_run, index, total)}: {line}")

    def retried(index: int, cell_run: CellRun, where: str, error: str, attempt: int, total: int) -> None:
        say(f"{label(cell_run, index, total)}: lost on node {where} ({error}); attempt {attempt} continues "
            "from the last shipped event")

    def finished(outcome: CellOutcome, total: int) -> None:
        line = f"{label(outcome.cell_run, outcome.index, total)}  ({outcome.state.run_id}): "
        say(line + (f"failed: {outcome.error}" if outcome.failed else outcome.state.status))

    def interrupted(count: int) -> None:
        if count == 1:
            say("pausing every running cell; rerun the same `tprompt experiment` command to continue "
                "(Ctrl-C again to quit now)")
        else:
            say("quitting the running cells now; their model calls stay cached")

    err_skipped = skipped if not json_ else None
    tick = board.update if board is not None else None

    def go() -> tuple[Experiment, list[CellOutcome]]:
        if ray:
            from ..experiments.ray_cells import Callbacks, run_on_ray

            callbacks = Callbacks(on_start=started, on_events=events, on_retry=retried, on_finish=finished,
                                  on_skip=err_skipped, on_tick=tick, on_signal=interrupted)
            return run_on_ray(log, planned, address=ray_address, concurrency=concurrency,
                              request_timeout=request_timeout, callbacks=callbacks)
        from ..experiments.parallel import run_parallel

        return run_parallel(log, planned, workers=workers, argv=argv, on_start=started, on_finish=finished,
                            on_skip=err_skipped, on_tick=tick, on_signal=interrupted)

    if board is None:
        return go()
    with board:
        return go()


class _Board:
    """One line per running cell on a terminal (rich Live), redrawn from the database."""

    def __init__(self, label: Any) -> None:
        self.label = label
        self.live = Live(Text(""), console=err, transient=True, refresh_per_second=4)

    def __enter__(self) -> _Board:
        self.live.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.stop()

    def update(self, running: list[tuple[int, CellRun, RunState]], total: int) -> None:
        from ..experiments.parallel import describe

        lines = [f"{self.label(c, i, total)}  ({s.run_id}): {describe(s)}" for i, c, s in sorted(running, key=lambda r: r[0])]
        self.live.update(Text("\n".join(lines)))


def _raise_failures(failures: list[CellOutcome], config: Path) -> None:
    if failures:
        first = failures[0]
        raise TPromptError(
            f"{len(failures)} run(s) of the experiment failed, first {first.cell_run.name} ({first.state.run_id}): "
            f"{first.error}",
            hint=f"after fixing the cause, continue with: {tprompt_cmd()} experiment {shlex.quote(str(config))}",
        )


def _state_of(log: EventLog, cell_run: CellRun) -> RunState | None:
    from ..experiments.grid import find_cell_run

    run_id = find_cell_run(log, cell_run)
    return log.state(run_id) if run_id else None


def _runs_table(experiment: Experiment, states: list[tuple[CellRun, RunState | None]]) -> Table:
    table = Table(title=f"experiment {experiment.name}")
    for col in ("cell", "arm", "seed", "run", "status", "train scorer calls / budget"):
        table.add_column(col)
    for cell_run, state in states:
        row = _cell_row(cell_run, state)
        table.add_row(
            Text(row["cell"]),
            ARM_LABELS[cell_run.arm],
            str(cell_run.seed),
            row["run_id"] or "-",
            row["status"],
            f"{row['train_scorer_calls']} / {row['budget']}",
        )
    return table


def report(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="An experiment name or id, or a run id (or a unique prefix)."),
    out_dir: Optional[Path] = typer.Option(
        None, "--out", help="Directory for report.md and the PNG plots. Default: ./report-<name>."
    ),
    json_: bool = JSON_OPTION,
) -> None:
    """Write a Markdown report with tables and PNG plots for an experiment or a single run.

    Tables per model and dataset: every metric on the held-out test split for each arm (original
    prompt, target-only optimization, Transfer-Prompting), mean and spread over seeds, and the change
    against the original prompt. Plots: score curves per step, reliability diagrams, the Pareto front.
    The tables are also printed here.

    Example: tprompt report smollm2-demo --out docs/results/smollm2-demo
    """
    from ..experiments.report import build_report, report_json, write_report

    with open_log(ctx) as log:
        target = find_experiment(log, ref)
        if target is None:
            try:
                run_id = log.resolve(ref)
            except UnknownRun:
                raise UnknownRun(
                    f"no experiment or run {ref!r} in {log.path}",
                    hint="`tprompt runs` lists runs; experiments are named by their config's `name`",
                ) from None
            rep = build_report(log, run_id=run_id)
        else:
            rep = build_report(log, experiment=target)
        directory = out_dir or Path(f"report-{rep.slug}")
        prepare_output_dir(directory, "--out")
        written = write_report(log, rep, directory)
    if json_:
        print_json(report_json(rep) | {"out": str(directory), "files": [str(p) for p in written]})
        return
    _print_wide(terminal_tables(rep))
    for note in rep.notes:
        err.print(Text(note))
    err.print(f"report written to {directory / 'report.md'} ({len(written)} files)")


def _print_wide(tables: list[Table]) -> None:
    # A pipe or a file gets whole rows rather than 80 columns of wrapped cells.
    width = out.width
    if not out.is_terminal:
        out.width = 220
    try:
        for table in tables:
            out.print(table)
    finally:
        out.width = width


def terminal_tables(rep: Any) -> list[Table]:
    """The report's tables for the terminal: per group, values and changes against the original."""
    from ..experiments.report import columns_of, table_rows
    from ..metric_specs import heading

    cols = columns_of(rep.groups)  # the runs' own metrics, in registry order, then the objective
    tables = []
    for group in rep.groups:
        values, changes = table_rows(group, cols)
        if not values:
            continue  # no finished runs in this cell yet
        title = f"{group.title}\ntest split, {group.n_test()} examples per seed, seeds {', '.join(map(str, group.seeds)) or '-'}"
        table = Table(title=Text(title))
        for col in ("arm", "n", *map(heading, cols)):
            table.add_column(col, justify="left" if col == "arm" else "right")
        for row in values:
            table.add_row(*row)
        if changes:
            table.add_section()
            for row in changes:
                table.add_row(*row)
        tables.append(table)
    return tables


def register(app: typer.Typer) -> None:
    app.command("experiment")(experiment)
    app.command("report")(report)
