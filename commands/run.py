"""Running the graph: ``run``, ``resume``, ``pause``, ``show``."""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from .._signals import Interrupts
from ..config import check_target_only, stage_rule
from ..errors import UsageError
from ..evaluator.program import PROGRAM_AGENT, ProgramOutput, prompt_names
from ..graph import Runner, load_config_file, make_config, open_run, preflight
from ..graph.parents import run_frontier
from ..graph.resources import ExecutionOptions, RunResources, with_program
from ..graph.rules import rollouts_used
from ..metric_specs import METRIC_NAMES, metric_columns
from ..prompt_file import read_prompt_source
from ..run_files import check_files, module_ref
from ..stores import EventLog, RunState
from ..stores.control import request_pause
from ..stores.events import CandidateAnswered, TestAnswered
from ..stores.frontier import Frontier
from ..stores.leases import holder_alive, lease_holder
from ..stores.summary import ROLE_LABELS, test_rows, test_title
from ._common import JSON_OPTION, RUN_ARGUMENT, err, fmt_num, log_and_run, open_log, out, print_json, shorten, tprompt_cmd
from ._model_options import (
    BASE_URL_OPTION,
    CONCURRENCY_OPTION,
    EXTRA_BODY_OPTION,
    MODEL_OPTION,
    PRECISION_OPTION,
    REQUEST_TIMEOUT_OPTION,
    base_url_setting,
    check_model_options,
    extra_body_setting,
)
from ._progress import RunProgress
from ._score_options import (
    DESCRIPTION_OPTION,
    JUDGE_OPTION,
    METRIC_OPTION,
    METRIC_TIMEOUT_OPTION,
    MODE_OPTION,
    RUBRIC_OPTION,
    WEIGHT_OPTION,
    scoring_settings,
)
from ._tables import metric_table
from .trace import OTEL_OPTION, live_export, otel_target

METRICS = METRIC_NAMES


def execute(
    log: EventLog,
    run_id: str,
    *,
    json_: bool,
    on_pause: str = "pausing: the work in flight is abandoned, its model calls stay cached (Ctrl-C again to quit now)",
    options: ExecutionOptions | None = None,
    resources: RunResources | None = None,
    otel: str | None = None,
) -> RunState:
    """Run or continue ``run_id`` in this process with progress and Ctrl-C = pause.

    ``on_pause`` is what the first Ctrl-C (or SIGTERM) prints on stderr;
    ``options``: this execution's (``max_cost``: USD, pause once the run's paid
    calls reach it; ``max_rollouts``: pause before its scorer calls on training
    examples would go past that many; ``concurrency`` and ``request_timeout``
    over the run's settings; ``force``: take over a lease held on another host,
    ``resume --force``); ``resources``: the run's resources if opened already (``tprompt run``);
    ``otel`` is an OTLP collector's URL (else ``OTEL_EXPORTER_OTLP_ENDPOINT``, else none): spans are sent as the run goes.

    Raises:
        RunBusy: another live process runs it (nothing is written: the runner takes the run's lease first).
    """
    where = otel_target(otel)
    # The runner takes the run's lease and honours `tprompt pause RUN`, even while model calls hang.
    runner = Runner(log, run_id, options=options, resources=resources)
    progress = RunProgress(enabled=err.is_terminal and not json_, plain=not json_)

    def on_signal(count: int) -> None:
        if count > 1:
            raise KeyboardInterrupt
        err.print(on_pause)
        runner.request_pause()

    with Interrupts(on_signal), progress, live_export(log, run_id, where) as export_hook:

        def on_update(update: Any) -> None:
            progress.update(update)
            export_hook(update)

        state = runner.run(on_update)
    if state.judgements and not json_:
        err.print(judge_line(state))
    for line in metric_failure_lines(runner.context.metric_set.failures):
        err.print(Text(line), soft_wrap=True)
    if state.config is not None and state.config.program is not None:
        program = runner.context.program
        for line in program_lines(log, run_id, state.config.program, program.output if program else None):
            err.print(Text(line), soft_wrap=True)
    if state.status == "paused" and runner.pause_reason == "budget":
        err.print(f"run {run_id}: spend ${runner.spent():.4f} reached --max-cost ${runner.options.max_cost or 0:.4f}; "
                  f"continue with a higher budget: {tprompt_cmd()} resume {run_id} --max-cost N")
    if state.status == "paused" and runner.pause_reason == "rollouts":
        used = rollouts_used(state)
        err.print(f"run {run_id}: {used} rollouts (scorer calls on training examples) of --max-rollouts "
                  f"{runner.options.max_rollouts}; the next scoring would go past it. Continue with a higher budget: "
                  f"{tprompt_cmd()} resume {run_id} --max-rollouts N")
    return state


def metric_failure_lines(failures: Mapping[str, tuple[int, str]]) -> list[str]:
    """One line per user metric that failed in this process: how often, the first reason, where the log is."""
    from ..evaluator.metric_worker import log_path

    return [f"metric {ref}: failed on {n} example(s), undefined there (first: {first}); details in {log_path()}"
            for ref, (n, first) in failures.items()]


def program_lines(log: EventLog, run_id: str, ref: str, output: ProgramOutput | None) -> list[str]:
    """What to tell of the run's program: its failed answers, answers with no recorded call, declared prompts
    in no call of its first answer set, and what it printed in this process (kept off the terminal)."""
    answered: list[tuple[int, CandidateAnswered | TestAnswered]] = [
        (se.seq, se.event) for se in log.events(run_id) if isinstance(se.event, (CandidateAnswered, TestAnswered))]
    answers = [a for _seq, e in answered for a in e.answers]
    lines = []
    failed = [a.error for a in answers if a.error is not None]
    if failed:
        lines.append(f"program {ref}: failed on {len(failed)} answer(s), each recorded as a wrong answer "
                     f"(first: {failed[0]})")
    uncalled = sum(a.error is None and a.call_id is None for a in answers)
    if uncalled:
        lines.append(f"program {ref}: {uncalled} answer(s) made no call through the llm it was given; calls to any "
                     "other model are neither cached nor transcribed (docs/programs.md)")
    seq, first = next(((seq, e) for seq, e in answered if isinstance(e, CandidateAnswered)), (0, None))
    if first is not None:
        store = log.transcripts
        segments = [(s.run_id, s.first_seq, s.last_seq) for s in log.lineage(run_id)]
        rows = [r for r in store.rows(segments, agent=PROGRAM_AGENT) if r.seq == seq]
        used = {name for r in rows for name in prompt_names(store.body(r.request_hash))}
        for name in json.loads(first.text) if rows else ():
            if name not in used:
                lines.append(f"program {ref}: its prompt {name!r} was in none of the {len(rows)} calls of its first "
                             f"{len(first.answers)} examples; send prompts[{name!r}] in a call to llm "
                             "(each literal piece of its text must be in the messages), or drop it from PROMPTS")
    if output is not None and output.lines:
        from ..evaluator.program_worker import log_path

        lines.append(f"program {ref}: printed {output.lines} line(s) while answering, kept off this output "
                     f"(first: {output.first}); in {log_path()}")
    return lines


def judge_line(state: RunState) -> str:
    """How the run's judge did: its judgements, and how many of its replies could not be parsed."""
    return (f"judge {state.config.judge if state.config else ''}: {state.judgements} judgement(s), "
            f"{state.judge_unparsed} unparseable (recorded, in no metric)")


def report(state: RunState, *, json_: bool) -> None:
    """The final table (or where the run stands) on stdout."""
    if json_:
        print_json(
            {
                "run_id": state.run_id,
                "status": state.status,
                "last_seq": state.last_seq,
                "target_task": state.target_task,
                "judge": {"judgements": state.judgements, "unparsed": state.judge_unparsed},
                "table": [
                    {"role": r.role, "prompt_id": r.prompt_id, "prompt": r.text, "task": r.task, "n_examples": r.n_examples,
                     "objective": r.objective, **r.metrics}
                    for r in (state.tested.get(k) for k in ROLE_LABELS) if r is not None
                ],
            }
        )
        return
    if state.status == "paused" and state.awaiting_review():
        err.print(f"run {state.run_id} paused for review of its {state.stage} step {state.in_flight} candidates: "
                  f"{tprompt_cmd()} review {state.run_id}")
    elif state.status == "paused":
        err.print(f"run {state.run_id} paused at seq {state.last_seq}; continue with: {tprompt_cmd()} resume {state.run_id}")
    elif state.status == "failed":
        err.print(Text(f"run {state.run_id} failed: {state.error}; after fixing the cause: {tprompt_cmd()} resume {state.run_id}"))
    if state.tested:
        out.print(result_table(state))
        for line in prompt_list(state):
            out.print(line)
    out.print(f"run [bold]{state.run_id}[/] {state.status} ({state.last_seq} events)")
    err.print(Text(next_steps(state)), soft_wrap=True)


def next_steps(state: RunState) -> str:
    """What to do with a run now, with its id."""
    r, tp = state.run_id, tprompt_cmd()
    if state.awaiting_review():
        return f"next: {tp} review {r} (see the candidates, then --accept, --drop N, --edit N=TEXT)"
    if state.status == "completed":
        fork = (f" · {tp} fork {r} --target TASK (transfer its source prompts elsewhere)"
                if state.config is None or state.config.transfer else "")
        return f"next: {tp} show {r} (details) · {tp} ui {r} (browse, replay){fork}"
    return f"next: {tp} resume {r} · {tp} show {r} · {tp} ui {r}"


def result_table(state: RunState) -> Table:
    """Metrics of the tested prompts (the run's own metric set); the prompt texts go in :func:`prompt_list`."""
    return metric_table(test_title(state), test_rows(state))


def prompt_list(state: RunState) -> list[Text]:
    lines = []
    for role, label in ROLE_LABELS.items():
        r = state.tested.get(role)
        if r is not None:
            lines += prompt_lines(state, f"{label} prompt ({r.prompt_id})", r.text)
    return lines


def prompt_lines(state: RunState, label: str, text: str, width: int = 400) -> list[Text]:
    """A prompt as lines: ``label: text``; a program's set of prompts, one line per prompt by name."""
    if state.config is None or state.config.program is None:
        return [Text.assemble((f"{label}: ", "bold"), shorten(text, width))]
    prompts = json.loads(text)
    return [Text.assemble((f"{label}:", "bold"))] + [
        Text.assemble("  ", (f"[{name}] ", "bold"), shorten(prompt, width)) for name, prompt in prompts.items()]


def _default(key: str) -> Any:
    """A run setting's default, for the help text (one source: RunConfig)."""
    from ..graph.config import RunConfig

    return RunConfig.model_fields[key].default


def _options(**given: Any) -> dict[str, Any]:
    return {k: v for k, v in given.items() if v is not None and v != []}


def run(
    ctx: typer.Context,
    source: Optional[list[str]] = typer.Option(None, "--source", metavar="TASK", help="Source task, a name or a path (repeat for several). Default: none when --target is given (target-only), ai2_science for the demo."),
    target: Optional[str] = typer.Option(None, "--target", metavar="TASK", help="Target task, a name or a path. Default: arc_challenge."),
    target_only: bool = typer.Option(False, "--target-only", help="Optimize on the target task alone: no source stage, no transfer (the default whenever --target is given without --source)."),
    model: Optional[str] = MODEL_OPTION,
    proposer: Optional[str] = typer.Option(None, "--proposer", metavar="SPEC", help="Model spec of the reference LLM that writes prompts. Default: --model."),
    scorer: Optional[str] = typer.Option(None, "--scorer", metavar="SPEC", help="Model spec of the scorer LLM. Default: --model."),
    steps: Optional[int] = typer.Option(None, "--steps", metavar="N", help=f"Optimization steps per stage. Default: {_default('steps')}."),
    candidates: Optional[int] = typer.Option(None, "--candidates", metavar="N", help=f"Candidates per step. Default: {_default('candidates')}."),
    top_k: Optional[int] = typer.Option(None, "--top-k", metavar="K", help=f"Source prompts transferred to the target. Default: {_default('top_k')}."),
    examples: Optional[int] = typer.Option(None, "--examples", metavar="N", help=f"Training examples per candidate score. Default: {_default('examples')}."),
    test_examples: Optional[int] = typer.Option(None, "--test-examples", metavar="N", help=f"Held-out examples in the final table. Default: {_default('test_examples')}."),
    mode: Optional[str] = MODE_OPTION,
    budget: Optional[str] = typer.Option(None, "--budget", metavar="BUDGET", help=f"full, or racing (successive halving). Default: {_default('budget')}."),
    proposer_style: Optional[str] = typer.Option(None, "--proposer-style", metavar="STYLE", help=f"paper (the reference prompt of (prompt, score) history) or reflective (improve a parent from its failures and their feedback, GEPA-style). Default: {_default('proposer_style')}."),
    parent_selection: Optional[str] = typer.Option(None, "--parent-selection", metavar="RULE", help=f"Reflective style: best (the stage's best candidate) or pareto (drawn from the candidates best on at least one training example). Default: {_default('parent_selection')}."),
    prompt: Optional[str] = typer.Option(None, "--prompt", metavar="TEXT", help="The original prompt to start from. Default: the task-neutral prompt shown by `tprompt show`."),
    prompt_file: Optional[Path] = typer.Option(None, "--prompt-file", metavar="FILE", help="Read the original prompt from a file: text, a `tprompt export`, or your prompt template (a LangChain ChatPromptTemplate dump, or a JSON/TOML/YAML file of messages with {field} placeholders; see docs/tasks.md)."),
    description: Optional[str] = DESCRIPTION_OPTION,
    seed: Optional[int] = typer.Option(None, "--seed", metavar="S", help=f"Seed of sampling. Default: {_default('seed')}."),
    name: Optional[str] = typer.Option(None, "--name", metavar="NAME", help="A label for the run."),
    base_url: Optional[list[str]] = BASE_URL_OPTION,
    precision: Optional[str] = PRECISION_OPTION,
    concurrency: Optional[int] = CONCURRENCY_OPTION,
    request_timeout: Optional[float] = REQUEST_TIMEOUT_OPTION,
    extra_body: Optional[str] = EXTRA_BODY_OPTION,
    judge: Optional[str] = JUDGE_OPTION,
    rubric: Optional[Path] = RUBRIC_OPTION,
    max_cost: Optional[float] = typer.Option(None, "--max-cost", help="USD: pause the run when its paid model calls reach this."),
    max_rollouts: Optional[int] = typer.Option(None, "--max-rollouts", metavar="N", help="Pause the run before its scorer calls on training examples (rollouts, both stages) would go past N."),
    review: bool = typer.Option(False, "--review", help="Pause before each proposed step is scored, for `tprompt review`."),
    metric: Optional[list[str]] = METRIC_OPTION,
    weight: Optional[list[str]] = WEIGHT_OPTION,
    metric_timeout: Optional[float] = METRIC_TIMEOUT_OPTION,
    program: Optional[str] = typer.Option(None, "--program", metavar="MODULE:FUNCTION", help="Optimize the named prompts of your program: run(inputs, *, prompts, llm) -> str | dict, with PROMPTS = {name: text} in its module; one prompt rewritten per step, every call recorded (docs/programs.md)."),
    config: Optional[Path] = typer.Option(None, "--config", help="A TOML or JSON file of run settings (options override it)."),
    otel: Optional[str] = OTEL_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """Optimize a prompt on source task(s), transfer it to a target task, and test all three.

    With no options: a small demo on the embedded model (ai2_science -> arc_challenge).
    A run with --target and no --source optimizes on the target alone (as --target-only does).
    Ctrl-C pauses; `tprompt resume RUN` continues, also after a crash.

    Example: tprompt run --source bbh/navigate --target bbh/web_of_lies --model fake --steps 3
    """
    # --concurrency and --request-timeout are the config's (recorded); the rest is this execution's.
    options = ExecutionOptions(max_cost=max_cost, max_rollouts=max_rollouts)
    check_model_options(concurrency, request_timeout)
    check_target_only(target_only, source)
    url = base_url_setting(base_url)
    template = None
    if prompt_file is not None:
        if prompt is not None:
            raise UsageError("give either --prompt or --prompt-file, not both")
        found = read_prompt_source(prompt_file)
        prompt, template = (found, None) if isinstance(found, str) else (None, found)
    values: dict[str, Any] = load_config_file(config) if config else {}
    if prompt_file is not None:
        values.pop("template" if template is None else "original_prompt", None)  # the option overrides the file
        if template is not None:
            values["template"] = template
    if model is not None:
        values["proposer"] = values["scorer"] = model
    values.update(
        _options(
            source_tasks=source, target_task=target, proposer=proposer, scorer=scorer, steps=steps,
            candidates=candidates, top_k=top_k, examples=examples, test_examples=test_examples,
            budget=budget, proposer_style=proposer_style, parent_selection=parent_selection, original_prompt=prompt,
            seed=seed, name=name, base_url=url, precision=precision, concurrency=concurrency,
            request_timeout=request_timeout, review=review or None,
            program=module_ref(program, what="program") if program else None,
            extra_body=extra_body_setting(extra_body, values),
        )
    )
    values = stage_rule(values, target_only=target_only)
    values.update(scoring_settings(values, mode=mode, metric=metric, weight=weight, metric_timeout=metric_timeout,
                                   judge=judge, rubric=rubric, description=description))
    cfg = make_config(values, where=str(config) if config else "options")
    cfg = with_program(_pin_base_url(cfg), prompt_given="original_prompt" in values)  # a bad program: one line here
    resources = preflight(cfg, options=options)  # a bad task or model fails before the database is even created
    if not json_:
        for line in row_warnings(cfg, resources.tasks):
            err.print(Text(f"warning: {line}"), soft_wrap=True)
    otel_target(otel)  # so does a bad --otel URL or a missing otel extra
    with open_log(ctx, readonly=False, create=True) as log:
        run_id, resources = open_run(log, cfg, resources=resources)  # named as the run recorded them
        if not json_:
            err.print(f"run {run_id} created in {log.path}")
        state = execute(log, run_id, json_=json_, options=options, resources=resources, otel=otel)
    report(state, json_=json_)


def row_warnings(cfg: Any, tasks: Mapping[str, Any]) -> list[str]:
    """What the run's settings ask for that its tasks (opened with the run's resources) cannot give:
    more training or test rows than they have."""
    lines = []
    names = [*cfg.source_tasks, cfg.target_task] if cfg.transfer else [cfg.target_task]
    for name in dict.fromkeys(names):
        task = tasks[name]
        if len(task.train) < cfg.examples:
            lines.append(f"task {name} has {len(task.train)} training row(s); each candidate is scored on those "
                         f"{len(task.train)}, not on --examples {cfg.examples}")
        if name == cfg.target_task and len(task.test) < cfg.test_examples:
            lines.append(f"task {name} has {len(task.test)} test row(s); the final table uses those "
                         f"{len(task.test)}, not --test-examples {cfg.test_examples}")
    return lines


def _pin_base_url(cfg: Any) -> Any:
    """The config with ``OPENAI_BASE_URL`` written into it when it decides where openai: calls go.

    The run's log then says which server answered, and ``resume`` from a shell
    without the variable still talks to it (and finds its answers in the cache).
    """
    from ..models.api import resolve_base_url

    if cfg.base_url or not any(spec.startswith("openai:") for spec in (cfg.proposer, cfg.scorer)):
        return cfg
    found = resolve_base_url("openai", None)
    return cfg.model_copy(update={"base_url": found}) if found else cfg


def resume(
    ctx: typer.Context,
    run: str = RUN_ARGUMENT,
    max_cost: Optional[float] = typer.Option(None, "--max-cost", help="USD: pause again when the run's paid calls reach this."),
    max_rollouts: Optional[int] = typer.Option(None, "--max-rollouts", metavar="N", help="Pause again before the run's scorer calls on training examples would go past N (counted from the run's start)."),
    concurrency: Optional[int] = CONCURRENCY_OPTION,
    request_timeout: Optional[float] = REQUEST_TIMEOUT_OPTION,
    force: bool = typer.Option(
        False, "--force",
        help="Take the run over from a process on another host that holds it (its lease). Safe only when that "
        "process is gone, e.g. its machine or container stopped: this host cannot check. A live process on "
        "this host is never taken over, and a killed one is taken over without --force.",
    ),
    otel: Optional[str] = OTEL_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """Continue a paused, failed or killed run from its last committed event.

    Model calls it already made come from the cache for free. Its models are the
    ones its config names; --concurrency and --request-timeout change how they are called.

    Example: tprompt resume r-1a2b3c --request-timeout 600
    """
    options = ExecutionOptions(max_cost=max_cost, max_rollouts=max_rollouts, concurrency=concurrency,
                               request_timeout=request_timeout, force=force)
    check_model_options(concurrency, request_timeout)
    otel_target(otel)
    with log_and_run(ctx, run, readonly=False) as (log, run_id):
        state = log.state(run_id)
        if state.status == "completed":
            err.print(f"run {run_id} is already completed")
        elif state.awaiting_review():
            raise UsageError(f"run {run_id} is waiting for a review of its {state.stage} step {state.in_flight} "
                             "candidates", hint=f"see them with {tprompt_cmd()} review {run_id}, then decide with --accept")
        else:
            if state.config is not None:
                check_files(state.config, run_id=run_id)  # a task file or metric module changed: refused here
            state = execute(log, run_id, json_=json_, options=options, otel=otel)
    report(state, json_=json_)


def pause(
    ctx: typer.Context,
    run: str = RUN_ARGUMENT,
) -> None:
    """Ask a run that is running in another terminal to pause at the next safe point.

    Example: tprompt pause r-1a2b3c
    """
    with log_and_run(ctx, run, readonly=False) as (log, run_id):
        state = log.state(run_id)
        if state.status in ("completed", "failed", "paused"):
            raise UsageError(f"run {run_id} is {state.status}; there is nothing to pause")
        holder = lease_holder(log, run_id)
        if holder is not None and not holder_alive(holder):
            raise UsageError(f"run {run_id} is not running: its process {holder.pid} is gone (killed or crashed)",
                             hint=f"there is nothing to pause; continue it with {tprompt_cmd()} resume {run_id}")
        request_pause(log, run_id)
    where = "" if holder is None or holder.host == socket.gethostname() else f" on {holder.host}"
    err.print(f"pause requested for {run_id}; its process{where} pauses after the work in flight")


def show(
    ctx: typer.Context,
    run: str = RUN_ARGUMENT,
    json_: bool = JSON_OPTION,
) -> None:
    """Config, lineage, best prompts per stage with metrics, scorer calls and transfer gain.

    Example: tprompt show r-1a2b3c --json
    """
    with log_and_run(ctx, run) as (log, run_id):
        state = log.state(run_id)
        lineage = [(s.run_id, s.first_seq, s.last_seq) for s in log.lineage(run_id)]
        spend = log.transcripts.spend([run_id])
        frontiers = _frontiers(log, run_id, state)
    data = summary(state)
    data["pareto_pool"] = {
        stage: [{"prompt_id": m, "examples_best_on": len(f.wins.get(m, ()))} for m in f.members]
        for stage, f in frontiers.items()
    }
    data["lineage"] = [{"run_id": r, "first_seq": a, "last_seq": b} for r, a, b in lineage]
    data["spend"] = [
        {"agent": a, "stage": st, "calls": n, "prompt_tokens": pt, "completion_tokens": ct, "usd": usd}
        for a, st, n, pt, ct, usd in spend
    ]
    if json_:
        print_json(data)
        return
    out.print(f"[bold]{state.run_id}[/] {state.status}, {state.last_seq} events" + (f", name {state.name}" if state.name else ""))
    if state.parent_run_id:
        out.print(f"forked from {state.parent_run_id} at seq {state.parent_seq}" + (f" from prompt {state.from_prompt_id}" if state.from_prompt_id else ""))
    out.print(Text(f"source: {', '.join(state.source_tasks) or '-'}  ->  target: {state.target_task}"))
    cfg = Table(title="config", show_header=False)
    for key, value in (state.config.model_dump() if state.config else {}).items():
        cfg.add_row(key, Text(str(value)))
    out.print(cfg)
    best = Table(title="best prompts per stage (training examples)")
    bests = [b for b in (state.best("source"), state.best("target")) if b is not None]
    names = metric_columns(b.metrics for b in bests)
    for col in ("stage", "prompt", "step", *names, "objective", "scorer calls", "text"):
        best.add_column(col)
    for stage in ("source", "target"):
        b = state.best(stage)
        if b is None:
            continue
        best.add_row(stage, b.prompt_id, str(b.step), *(fmt_num(b.metrics.get(m)) for m in names), fmt_num(b.objective),
                     str(state.scorer_calls.get(stage, 0)), Text(shorten(b.text, 60)))
    out.print(best)
    if state.config is not None and state.config.program is not None:
        for b in bests:
            for line in prompt_lines(state, f"best {b.stage} prompts ({b.prompt_id})", b.text):
                out.print(line)
    for front in frontiers.values():
        out.print(frontier_table(state, front))
    if state.tested:
        out.print(result_table(state))
        for line in prompt_list(state):
            out.print(line)
    if data["transfer_gain"] is not None:
        # A target-only run transferred nothing: the same difference, named for what it is.
        what = "transfer gain" if state.config is None or state.config.transfer else "gain (target-only, no transfer)"
        out.print(f"{what} on the test split (objective, best target - original): {data['transfer_gain']:+.3f}")
    if spend:
        out.print(spend_table(spend))


def _frontiers(log: Any, run_id: str, state: RunState) -> dict[str, Frontier]:
    """Each stage's Pareto pool (the stages that scored a candidate), from the run's events."""
    if state.config is None:
        return {}
    events = list(log.events(run_id))
    fronts = {stage: run_frontier(events, state.config, stage) for stage in ("source", "target")}
    return {stage: f for stage, f in fronts.items() if f.candidates}


def frontier_table(state: RunState, front: Frontier) -> Table:
    """A stage's Pareto pool: each member, the (metric, example) keys it is best on, its objective, its text."""
    table = Table(title=f"Pareto pool, {front.stage} stage ({len(front.members)} of {len(front.candidates)} "
                        f"candidates, {front.keys} per-example keys)")
    for col in ("prompt", "keys best on (ties too)", "objective", "text"):
        table.add_column(col)
    mean = {h.prompt_id: h.objective for h in state.history(front.stage)}
    for pid in front.members:
        table.add_row(pid, str(len(front.wins.get(pid, ()))), fmt_num(mean.get(pid)),
                      Text(shorten(state.prompts.get(pid, ""), 60)))
    return table


def spend_table(spend: list[tuple[str, str, int, int, int, float | None]]) -> Table:
    """Model calls paid (not from the cache) per agent and stage, with tokens and USD."""
    from ..models.pricing import SPEND_COLUMNS, spend_rows

    table = Table(title="spend (calls answered by the model)", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in SPEND_COLUMNS:
        table.add_column(col, justify="left" if col in ("agent", "stage") else "right")
    for row in spend_rows(spend):
        table.add_row(*row)
    return table


def summary(state: RunState) -> dict[str, Any]:
    gain = None
    if "best_target" in state.tested and "original" in state.tested:
        gain = state.tested["best_target"].objective - state.tested["original"].objective
    return {
        "run_id": state.run_id,
        "status": state.status,
        "name": state.name,
        "last_seq": state.last_seq,
        "config": state.config.model_dump(mode="json") if state.config else {},
        "parent_run_id": state.parent_run_id,
        "parent_seq": state.parent_seq,
        "from_prompt_id": state.from_prompt_id,
        "source_tasks": list(state.source_tasks),
        "target_task": state.target_task,
        "best": {
            stage: (b.model_dump(mode="json") if (b := state.best(stage)) else None) for stage in ("source", "target")
        },
        "top_k": {k: list(v) for k, v in state.top_k.items()},
        "scorer_calls": state.scorer_calls,
        "proposer_calls": state.proposer_calls,
        "tested": {k: v.model_dump(mode="json") for k, v in state.tested.items()},
        "transfer_gain": gain,
        "error": state.error,
    }


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("resume")(resume)
    app.command("pause")(pause)
    app.command("show")(show)
