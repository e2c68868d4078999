"""Scoring a prompt on a task (``eval``) and listing the bundled tasks (``tasks``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich import box
from rich.table import Table

from ..config import default_precision
from ..errors import UsageError
from ..evaluator import check_mode, list_tasks, load_task, resolve_mode, score_prompt
from ..graph.config import DEFAULT_ORIGINAL_PROMPT as DEFAULT_PROMPT
from ..metric_specs import METRICS
from ..prompt_file import read_prompt_file
from ._common import JSON_OPTION, SafeConsole, err, fmt_num, out, print_json, settings, shorten
from ._model_options import (
    BASE_URL_OPTION,
    CONCURRENCY_OPTION,
    MODEL_OPTION,
    PRECISION_OPTION,
    REQUEST_TIMEOUT_OPTION,
    base_url_setting,
    check_model_options,
)

DEFAULT_MODEL = "smollm2"


def _read_prompt(prompt: Optional[str], prompt_file: Optional[Path]) -> str:
    if prompt is not None and prompt_file is not None:
        raise UsageError("give either --prompt or --prompt-file, not both")
    if prompt_file is not None:
        return read_prompt_file(prompt_file)
    if prompt is not None and not prompt.strip():
        raise UsageError("--prompt is empty", hint="give the prompt to evaluate, or leave --prompt out for the default")
    return DEFAULT_PROMPT if prompt is None else prompt


def _score(text, rows, task, backend, recorder, mode, *, show: bool):
    """score_prompt, with a progress bar on stderr when ``show``."""
    if not show:
        return score_prompt(text, rows, task=task, model=backend, recorder=recorder, mode=mode)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as bar:
        job = bar.add_task("scoring", total=len(rows))
        return score_prompt(text, rows, task=task, model=backend, recorder=recorder, mode=mode,
                            progress=lambda done, total: bar.update(job, completed=done))


def eval_cmd(
    ctx: typer.Context,
    task: str = typer.Option(..., "--task", "-t", help="Bundled task name (see `tprompt tasks`) or a path to your own task (JSONL, CSV or folder)."),
    prompt: Optional[str] = typer.Option(None, "--prompt", "-p", help=f"The prompt to evaluate (the scorer's system message). Default: the original prompt of a run, {DEFAULT_PROMPT!r}."),
    prompt_file: Optional[Path] = typer.Option(None, "--prompt-file", help="Read the prompt from this file instead (text, or a `tprompt export` JSON file)."),
    model: Optional[str] = MODEL_OPTION,
    base_url: Optional[list[str]] = BASE_URL_OPTION,
    precision: Optional[str] = PRECISION_OPTION,
    concurrency: Optional[int] = CONCURRENCY_OPTION,
    request_timeout: Optional[float] = REQUEST_TIMEOUT_OPTION,
    mode: str = typer.Option("auto", "--mode", help="auto (logprob where the task and model allow, as in `run`), generate (verbalized answer and confidence) or logprob (option probabilities; multiple-choice tasks)."),
    examples: int = typer.Option(20, "--examples", "-n", help="How many examples to score (drawn with --seed)."),
    split: str = typer.Option("test", "--split", help="train or test."),
    seed: int = typer.Option(0, "--seed", help="Seed of the example draw."),
    skip_bad_rows: bool = typer.Option(False, "--skip-bad-rows", help="Skip (and list) bad rows of a user task file instead of failing."),
    json_: bool = JSON_OPTION,
) -> None:
    """Score a prompt on a task: accuracy, IFR, ECE, AUROC, PR-P, PR-N, Brier and the objective.

    Model calls are cached in the database (--db), so repeating an evaluation is free.

    Example: tprompt eval --task mmlu/anatomy --prompt "Answer carefully." --model fake -n 10
    """
    # Validate everything before touching the database: a bad input writes nothing.
    model = DEFAULT_MODEL if model is None else model
    check_model_options(concurrency, request_timeout)
    url = base_url_setting(base_url)
    text = _read_prompt(prompt, prompt_file)
    if mode not in ("auto", "generate", "logprob"):
        raise UsageError(f"unknown --mode {mode!r}", hint="use auto, generate or logprob")
    if split not in ("train", "test"):
        raise UsageError(f"unknown --split {split!r}", hint="use train or test")
    if examples < 1:
        raise UsageError(f"--examples must be at least 1, not {examples}")
    the_task = load_task(task, skip_bad_rows=skip_bad_rows)
    for warning in the_task.warnings:
        err.print(f"warning: {warning}", highlight=False, markup=False)
    if mode != "auto":
        check_mode(mode, the_task)
    from ..models import Recorder, get_model

    backend = get_model(model, base_url=url, concurrency=concurrency, request_timeout=request_timeout,
                        precision=precision or default_precision(model))
    mode = resolve_mode(mode, the_task, backend)
    check_mode(mode, the_task, backend)
    rows = the_task.sample(examples, split=split, seed=seed)
    if len(rows) < examples and not json_:
        err.print(f"note: the {split} split of {the_task.name} has only {len(rows)} examples")

    with Recorder(settings(ctx).db_path) as recorder:
        evaluation = _score(text, rows, the_task, backend, recorder, mode, show=not json_ and err.is_terminal)
        model_calls = recorder.model_calls
    counts = {
        "examples": evaluation.n_examples,
        "parsed": evaluation.n_parsed,
        "followed_format": sum(a.followed_format for a in evaluation.answers),
        "correct": evaluation.n_correct,
        "scorer_calls": evaluation.scorer_calls,
        "cache_hits": evaluation.cache_hits,
        "model_calls": model_calls,
    }
    if json_:
        print_json(
            {
                "task": the_task.name,
                "model": model,
                "mode": mode,
                "split": split,
                "seed": seed,
                "prompt": text,
                "metrics": evaluation.metrics,
                "objective": evaluation.objective,
                "counts": counts,
                "notes": list(evaluation.notes),
                "warnings": list(the_task.warnings),
                "answers": [a.model_dump() for a in evaluation.answers],
            }
        )
        return
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    for spec in METRICS:
        table.add_row(spec.long_label, fmt_num(evaluation.metrics.get(spec.name)))
    table.add_row("[bold]objective[/]", f"[bold]{fmt_num(evaluation.objective)}[/]")
    table.add_section()
    for name, value in counts.items():
        table.add_row(name.replace("_", " "), str(value))
    out.print(f"task {the_task.name} · model {model} · mode {mode} · {split} split · seed {seed}", markup=False)
    out.print(f"prompt: {shorten(text, 72) or '(empty)'}", markup=False)
    out.print(table)
    for note in evaluation.notes:
        out.print(f"note: {note}", markup=False)
    if any(v is None for v in evaluation.metrics.values()):
        out.print("n/a: undefined here (e.g. AUROC when all answers are right or all wrong)", markup=False)


def tasks_cmd(json_: bool = JSON_OPTION) -> None:
    """List the bundled tasks: answer kind, train/test sizes, domain and license.

    LogiQA 2.0 is licensed CC BY-NC-SA 4.0: non-commercial use only.

    Example: tprompt tasks --json
    """
    infos = list_tasks()
    if json_:
        print_json([i.model_dump() for i in infos])
        return
    table = Table(title=f"{len(infos)} bundled tasks", box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
    table.add_column("task", no_wrap=True)  # names must stay whole: users copy them
    table.add_column("answer", no_wrap=True)
    table.add_column("train", justify="right", no_wrap=True, min_width=5)
    table.add_column("test", justify="right", no_wrap=True, min_width=4)
    table.add_column("domain", no_wrap=True)
    table.add_column("license", min_width=10)
    for i in infos:
        # a string task with a fixed answer space shows the space ("Yes/No")
        kind = "/".join(i.answer_space) if i.answer_space else i.kind
        lic = f"[bold yellow]{i.license}[/]" if i.non_commercial else i.license
        table.add_row(i.name, kind, str(i.n_train), str(i.n_test), i.domain, lic)
    # Piped output has no width to respect; don't squeeze the table into rich's default 80.
    console = out if out.is_terminal else SafeConsole(file=sys.stdout, width=120, highlight=False)
    console.print(table)
    if any(i.non_commercial for i in infos):
        out.print("non-commercial: " + ", ".join(i.name for i in infos if i.non_commercial)
                  + " may only be used for non-commercial purposes.", markup=False)
    out.print("Your own task: a path to a JSONL or CSV file or a folder, in place of a name: "
              "`tprompt eval --task PATH`, `tprompt run --source PATH --target PATH` (see docs/tasks.md).", markup=False)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)
    app.command("tasks")(tasks_cmd)
