"""Scoring a prompt on a task (``eval``) and listing the bundled tasks (``tasks``)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from ..config import RunConfig, load_config_file, make_config
from ..errors import JudgeUnparseable, UsageError
from ..evaluator import LOGPROB_IFR_NOTE, Task, list_tasks, load_task
from ..evaluator.template import ChatTemplate
from ..graph.config import DEFAULT_ORIGINAL_PROMPT as DEFAULT_PROMPT
from ..graph.resources import RunResources, with_program
from ..prompt_file import read_prompt_source
from ..run_files import module_ref
from ._common import JSON_OPTION, SafeConsole, err, open_log, out, print_json, shorten
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
from ._tables import MetricRow, metric_table
from .run import metric_failure_lines

if TYPE_CHECKING:
    from ..graph.heldout import HeldOutScore

DEFAULT_MODEL = "smollm2"


@dataclass(frozen=True, slots=True)
class PromptSource:
    """One prompt to score: its label in the table, and its text or template (as ``run --prompt-file`` reads it)."""

    label: str
    prompt: str | ChatTemplate
    #: where it was given, as an error about this prompt alone names it (``--prompt-file best.json``)
    origin: str = "the default prompt"
    #: the template a text prompt is scored in (the one given beside it: :func:`in_template`)
    template: ChatTemplate | None = None


def prompt_sources(prompts: list[str] | None, files: list[Path] | None) -> list[PromptSource]:
    """The prompts to score, in the order given (each ``--prompt``, then each ``--prompt-file``); the default
    prompt of a run when there are none.

    Raises:
        UsageError: an empty ``--prompt``; PromptFileError: an unreadable or invalid prompt file.
    """
    sources = []
    for i, text in enumerate(prompts or [], 1):
        which = "--prompt" if len(prompts or []) == 1 else f"--prompt {i} of {len(prompts or [])}"
        if not text.strip():
            raise UsageError(f"{which} is empty", hint="give the prompt to evaluate, or leave --prompt out for the default")
        sources.append(PromptSource(f"prompt {i}", text, which))
    sources += [PromptSource(str(path), read_prompt_source(path), f"--prompt-file {path}") for path in files or []]
    return sources or [PromptSource("default", DEFAULT_PROMPT)]


def in_template(sources: list[PromptSource], fallback: ChatTemplate | None = None) -> list[PromptSource]:
    """``sources`` with each text prompt scored in the template given beside it (a ``--prompt-file`` template,
    else ``fallback``: the ``--config`` file's), as ``run`` scores ``--prompt`` in its config's template: the
    text is the candidate in the template's optimizable message(s).

    Raises:
        UsageError: text prompts beside templates that differ outside their optimizable messages (which one?).
    """
    templates = [s for s in sources if isinstance(s.prompt, ChatTemplate)]
    frames = {_frame(s.prompt): s for s in templates if isinstance(s.prompt, ChatTemplate)}
    texts = [s for s in sources if isinstance(s.prompt, str)]
    if not texts or (not frames and fallback is None):
        return sources
    if len(frames) > 1:
        names = " and ".join(s.origin.removeprefix("--prompt-file ") for s in frames.values())
        raise UsageError(f"{texts[0].origin} is scored in the template given beside it, and {names} are different "
                         "templates", hint="evaluate each template in its own `tprompt eval`, or put the text in a "
                         "copy of the template file and give that with --prompt-file")
    template = templates[0].prompt if templates else fallback
    assert isinstance(template, ChatTemplate)
    return [replace(s, template=template) if isinstance(s.prompt, str) else s for s in sources]


def _frame(template: ChatTemplate) -> tuple[tuple[str, str | None], ...]:
    """What a template is apart from the text a candidate puts in it (its optimizable messages)."""
    return tuple((m.role, None if m.optimizable else m.content) for m in template.messages)


def _configs(sources: list[PromptSource], values: dict[str, Any], *, where: str = "options") -> list[RunConfig]:
    """The run configuration each prompt is scored under: the same settings, its own prompt or template.

    The shared settings are checked once, and a problem there is named as ``run`` names it (``where``: the
    options, or the ``--config`` file); a problem of one prompt names that prompt (its ``origin``).
    """
    make_config(values, where=where)
    out = []
    for source in sources:
        prompt: dict[str, str | ChatTemplate] = ({"original_prompt": source.prompt} if isinstance(source.prompt, str) else {"template": source.prompt})
        if source.template is not None:
            prompt["template"] = source.template
        out.append(make_config({**values, **prompt}, where=source.origin))
    return out


def _open_all(configs: list[RunConfig], task: Task) -> list[RunResources]:
    """Each configuration's resources (models and metrics are shared, the task is loaded once)."""
    return [RunResources.open(cfg, tasks={task.name: task}) for cfg in configs]


def eval_cmd(
    ctx: typer.Context,
    task: Optional[str] = typer.Option(None, "--task", "-t", help="Bundled task name (see `tprompt tasks`) or a path to your own task (JSONL, CSV or folder). Default: --config's target_task."),
    prompt: Optional[list[str]] = typer.Option(None, "--prompt", "-p", metavar="TEXT", help=f"A prompt to evaluate (the scorer's system message; beside a template --prompt-file or --config, the text of the template's optimizable message); repeat it to compare several. Default: --config's prompt, a --program's PROMPTS, else the original prompt of a run, {DEFAULT_PROMPT!r}."),
    prompt_file: Optional[list[Path]] = typer.Option(None, "--prompt-file", metavar="FILE", help="A prompt to evaluate, read from a file (repeat for several): text, a `tprompt export`, or your prompt template (JSON/TOML/YAML messages with {field} placeholders, or a LangChain dump), as `run --prompt-file` reads it."),
    model: Optional[str] = MODEL_OPTION,
    base_url: Optional[list[str]] = BASE_URL_OPTION,
    precision: Optional[str] = PRECISION_OPTION,
    concurrency: Optional[int] = CONCURRENCY_OPTION,
    request_timeout: Optional[float] = REQUEST_TIMEOUT_OPTION,
    extra_body: Optional[str] = EXTRA_BODY_OPTION,
    mode: Optional[str] = MODE_OPTION,
    metric: Optional[list[str]] = METRIC_OPTION,
    weight: Optional[list[str]] = WEIGHT_OPTION,
    metric_timeout: Optional[float] = METRIC_TIMEOUT_OPTION,
    judge: Optional[str] = JUDGE_OPTION,
    rubric: Optional[Path] = RUBRIC_OPTION,
    description: Optional[str] = DESCRIPTION_OPTION,
    program: Optional[str] = typer.Option(None, "--program", metavar="MODULE:FUNCTION", help="Score your program (as `run --program`): it answers each row under the prompt set given (default: its PROMPTS); its calls are recorded under agent `program`."),
    config: Optional[Path] = typer.Option(None, "--config", help="A run's TOML or JSON settings file (as `run --config`): its task, prompt, models, metrics, judge, test_examples and seed; options override it."),
    examples: Optional[int] = typer.Option(None, "--examples", "-n", help="How many examples to score (drawn with --seed, as a run draws its --test-examples). Default: --config's test_examples, else 20."),
    split: str = typer.Option("test", "--split", help="train or test."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the example draw (a run's --seed). Default: --config's seed, else 0."),
    skip_bad_rows: bool = typer.Option(False, "--skip-bad-rows", help="Skip (and list) bad rows of a user task file instead of failing."),
    json_: bool = JSON_OPTION,
) -> None:
    """Score prompts on a task as `run` scores its held-out test: the same metrics, judge, objective and columns.

    Several --prompt or --prompt-file options are scored on the same examples and shown side by side.

    Model calls are cached in the database (--db), so repeating an evaluation is free: with a run's --seed, and -n its --test-examples, a run's prompts score what the run's table says (or give the run's --config file).

    Example: tprompt eval --task mmlu/anatomy --prompt "Answer carefully." --prompt "Think first." --model fake -n 10
    """
    # Validate everything before touching the database: a bad input writes nothing.
    check_model_options(concurrency, request_timeout)
    url = base_url_setting(base_url)
    if split not in ("train", "test"):
        raise UsageError(f"unknown --split {split!r}", hint="use train or test")
    base: dict[str, Any] = load_config_file(config) if config else {}
    file_prompt = _file_prompt(base, config)
    task = task or base.get("target_task")
    if task is None:
        raise UsageError("eval needs a task: give --task TASK (a bundled name or your file), or target_task in a --config file")
    examples = base.get("test_examples", 20) if examples is None else examples
    seed = base.get("seed", 0) if seed is None else seed
    _check_examples(examples)
    sources = prompt_sources(prompt, prompt_file) if prompt or prompt_file or file_prompt is None else [file_prompt]
    sources = in_template(sources, file_prompt.prompt if file_prompt and isinstance(file_prompt.prompt, ChatTemplate)
                          else None)
    given = bool(prompt or prompt_file or file_prompt)
    program = module_ref(program, what="program") if program else base.get("program")
    if program and not given:  # the program's own PROMPTS (with_program sets them)
        sources = [PromptSource(f"{program} PROMPTS", DEFAULT_PROMPT, f"--program {program}")]
    model = (base.get("scorer") or DEFAULT_MODEL) if model is None else model
    values: dict[str, Any] = {
        **base, "target_task": task, "transfer": False, "source_tasks": [], "proposer": model, "scorer": model,
        "seed": seed, "test_examples": examples, **({"precision": precision} if precision else {}),
        **{k: v for k, v in (("base_url", url), ("concurrency", concurrency), ("request_timeout", request_timeout),
                             ("program", program), ("extra_body", extra_body_setting(extra_body, base)))
           if v is not None},
    }
    values.update(scoring_settings(values, mode=mode, metric=metric, weight=weight, metric_timeout=metric_timeout,
                                   judge=judge, rubric=rubric, description=description))
    configs = [with_program(c, prompt_given=given) for c in _configs(sources, values, where=str(config) if config else "options")]
    the_task = load_task(task, skip_bad_rows=skip_bad_rows)
    for warning in the_task.warnings:
        err.print(f"warning: {warning}", highlight=False, markup=False)
    resources = _open_all(configs, the_task)  # tasks, templates, metrics, models, mode: checked before any write
    n_rows = len(the_task.train if split == "train" else the_task.test)
    if n_rows < examples and not json_:
        err.print(f"note: the {split} split of {the_task.name} has only {n_rows} examples", markup=False)
    results = _score_all(ctx, resources, split=split, n=examples, show=not json_ and err.is_terminal)
    for line in metric_failure_lines({k: v for r in resources for k, v in r.metric_set.failures.items()}):
        err.print(Text(line), soft_wrap=True)
    head = {"task": the_task.name, "model": model, "split": split, "seed": seed, "warnings": list(the_task.warnings)}
    if json_:
        print_json(eval_json(head, sources, results))
    else:
        _print_results(head, sources, results)


def _check_examples(examples: int) -> None:
    limit = RunConfig.model_fields["test_examples"].metadata[-1].le  # a run's --test-examples bound
    if examples < 1:
        raise UsageError(f"--examples must be at least 1, not {examples}")
    if examples > limit:
        raise UsageError(f"--examples must be at most {limit}, not {examples}")


def _file_prompt(base: dict[str, Any], config: Path | None) -> PromptSource | None:
    """The prompt a ``--config`` file names (``original_prompt``, or ``prompt_file``'s text or template), taken
    out of ``base`` (each prompt scored sets its own); None when the file names none."""
    template, text = base.pop("template", None), base.pop("original_prompt", None)
    if template is None and text is None:
        return None
    return PromptSource(str(config), template if template is not None else text, f"--config {config}")


@dataclass(frozen=True, slots=True)
class Scored:
    """One prompt's score and the model calls it took (not from the cache)."""

    score: HeldOutScore
    model_calls: int


def _score_all(ctx: typer.Context, resources: list[RunResources], *, split: str, n: int, show: bool) -> list[Scored]:
    from ..graph.heldout import score_held_out  # the graph's nodes (LangGraph): only when scoring
    from ..models import Recorder

    out = []
    with open_log(ctx, readonly=False, create=True) as log:
        # eval writes only the cache: it never reads the runs' tables, so it would write on into a file whose
        # damage every other command stops at
        log.store.check_undamaged()
        with Recorder(log) as recorder, _progress(show) as progress:
            for i, res in enumerate(resources):
                before = recorder.model_calls
                # a judge that cannot be read stops at its first batch, as in a run
                try:
                    score = score_held_out(res, log=log, recorder=recorder, split=split, n=n, progress=progress,
                                           probe_judge=i == 0)
                except JudgeUnparseable as exc:
                    exc.hint = "evaluate with another judge: --judge SPEC"
                    raise
                out.append(Scored(score, recorder.model_calls - before))
    return out


@contextmanager
def _progress(show: bool) -> Iterator[Callable[[str, int, int], None] | None]:
    """A progress bar on stderr when ``show``: ``(label, done, total)``."""
    if not show:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as bar:
        jobs: dict[str, Any] = {}

        def report(label: str, done: int, total: int) -> None:
            if label not in jobs:
                jobs[label] = bar.add_task(label, total=total)
            bar.update(jobs[label], completed=done, total=total)

        yield report


def counts(scored: Scored) -> dict[str, int]:
    """What one prompt's scoring took and gave: rows, parsed answers, calls."""
    score = scored.score
    return {
        "examples": score.tested.n_examples,
        "parsed": sum(a.parsed is not None for a in score.answers),
        "followed_format": sum(a.followed_format for a in score.answers),
        "correct": sum(a.correct for a in score.answers),
        "scorer_calls": len(score.answers),
        "judge_calls": score.judged.judge_calls if score.judged is not None else 0,
        "cache_hits": score.cache_hits,
        "model_calls": scored.model_calls,
    }


def _notes(score: HeldOutScore) -> list[str]:
    return [LOGPROB_IFR_NOTE] if score.mode == "logprob" else []


def eval_json(head: dict[str, Any], sources: list[PromptSource], results: list[Scored]) -> dict[str, Any]:
    """``eval --json``: one entry per prompt in ``results``; the first prompt's fields also at the top level."""
    entries = []
    for source, scored in zip(sources, results):
        score, tested = scored.score, scored.score.tested
        judged = score.judged
        entries.append({
            "label": source.label,
            "prompt": tested.text,
            "prompt_id": tested.prompt_id,
            "template": source.template is not None or not isinstance(source.prompt, str),
            "mode": score.mode,
            "metrics": tested.metrics,
            "objective": tested.objective,
            "undefined": tested.undefined,
            "counts": counts(scored),
            "judge": None if judged is None else {
                "judge": judged.judge, "judgements": len(judged.judgements),
                "unparsed": sum(j.score is None for j in judged.judgements)},
            "notes": _notes(score),
            "answers": [a.model_dump() for a in score.answers],
        })
    return {**head, **{k: v for k, v in entries[0].items() if k != "label"}, "results": entries}


def _print_results(head: dict[str, Any], sources: list[PromptSource], results: list[Scored]) -> None:
    first = results[0].score
    out.print(Text(f"task {head['task']} · model {head['model']} · mode {first.mode} · {head['split']} split · "
                   f"seed {head['seed']}"))
    rows = [MetricRow(s.label, r.score.tested.metrics, r.score.tested.objective, r.score.tested.undefined)
            for s, r in zip(sources, results)]
    out.print(metric_table(f"{head['task']}: {head['split']} split ({first.tested.n_examples} examples)", rows))
    calls = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    calls.add_column("prompt", no_wrap=True)
    keys = list(counts(results[0]))
    for key in keys:
        calls.add_column(key.replace("_", " "), justify="right")
    for source, scored in zip(sources, results):
        numbers = counts(scored)
        calls.add_row(Text(source.label), *(str(numbers[k]) for k in keys))
    out.print(calls)
    for source, scored in zip(sources, results):
        tested = scored.score.tested
        out.print(Text.assemble((f"{source.label} ({tested.prompt_id}): ", "bold"), shorten(tested.text, 400) or "(empty)"))
    for note in dict.fromkeys(n for r in results for n in _notes(r.score)):
        out.print(f"note: {note}", markup=False)
    if any(v is None for r in results for v in r.score.tested.metrics.values()):
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
