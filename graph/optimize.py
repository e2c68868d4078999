"""tprompt from Python: tasks from lists of dicts, one call to optimize, your own nodes and objective.

>>> from tprompt import optimize, task_from_records
>>> task = task_from_records("capitals", rows, description="Name the capital city.")
>>> state = optimize("runs.db", target=task, transfer=False, model="fake", steps=2)
>>> state.tested["best_target"].objective

Every run made here is an ordinary tprompt run: events in the SQLite file,
transcripts, ``tprompt show/replay/fork/ui`` on the same database. Python
objects (tasks, an objective function, extra nodes) are not stored in the
log: pass the same ones to :class:`Runner` to resume such a run, and
``replay --rerun`` only reproduces runs whose tasks are files or bundled.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..evaluator import Example, Task
from ..evaluator._userfiles import input_fields
from ..evaluator.program import program_ref
from ..evaluator.task_model import LETTERS, SplitRuleError, infer_kind, split_rows
from ..evaluator.template import MAX_DESCRIPTION_CHARS, ChatTemplate
from ..prompt_file import template_from_langchain
from ..stores import EventLog
from ..stores.projection import RunState
from .api import open_run
from .build import build_graph
from .config import make_config
from .context import Objective
from .nodes import Node
from .resources import ExecutionOptions, RunResources, with_program
from .runner import Runner, Update


def task_from_records(
    name: str,
    records: Sequence[Mapping[str, Any]],
    *,
    description: str,
) -> Task:
    """A task from rows ``{"question", "choices" (optional list), "answer"}``, or open-ended ``{..., "reference"}``.

    A row may carry other input fields (a template names them, see docs/tasks.md), an ``id`` (default
    ``NAME-i``, i from 1) and a ``split`` (``train`` or ``test``).

    With ``choices`` the task is multiple choice and ``answer`` is the right
    choice's text (or its letter); without, the answer kind is inferred as for a task file (numbers, a label
    task's answer space, or free strings; docs/tasks.md).
    The rows are split as a task file's are (:func:`~tprompt.evaluator.task_model.split_rows`): by their
    ``split`` when every row has one, else 20% train / 80% test by the sha256 of their ids.
    """
    if not records:
        raise UsageError(f"task {name!r} has no rows")
    examples: list[Example] = []
    splits: list[str | None] = []
    kinds = set()
    if len(description) > MAX_DESCRIPTION_CHARS:
        raise UsageError(f"task {name!r}: the description has {len(description)} characters, more than the "
                         f"{MAX_DESCRIPTION_CHARS} the proposer's prompt takes", hint="shorten it to a few sentences")
    for i, row in enumerate(records, 1):
        example, kind = _record(name, i, row)
        if any(e.id == example.id for e in examples):
            raise UsageError(f"task {name!r}, row {i}: duplicate id {example.id!r}")
        split = row.get("split")
        if split is not None and split not in ("train", "test"):
            raise UsageError(f"task {name!r}, row {i}: 'split' must be 'train' or 'test', not {split!r}")
        examples.append(example)
        splits.append(split)
        kinds.add(kind)
    if len(kinds) > 1:
        raise UsageError(f"task {name!r} mixes rows with and without choices")
    try:
        train, test = split_rows(examples, splits)
    except SplitRuleError as exc:
        where = f"task {name!r}" + (f", row {exc.row + 1}" if exc.row is not None else "")
        raise UsageError(f"{where}: {exc}") from exc
    kind, space = infer_kind(train + test)  # the rule a task file's rows follow (numbers, an answer space)
    return Task(name=name, description=description, kind=kind, answer_space=space, train=tuple(train),
                test=tuple(test))


def _record(name: str, i: int, row: Mapping[str, Any]) -> tuple[Example, str]:
    """Row ``i`` (from 1) of ``task_from_records`` as an example, and its kind."""
    row_id = str(row["id"]) if isinstance(row, Mapping) and row.get("id") not in (None, "") else f"{name}-{i}"
    if isinstance(row, Mapping) and ("reference" in row or "references" in row) and "answer" not in row:
        return _open_row(name, i, row_id, row), "text"
    if not isinstance(row, Mapping) or "answer" not in row or not input_fields(dict(row)):
        raise UsageError(f"task {name!r}, row {i}: needs 'answer' (or 'reference') and an input field "
                         "such as 'question'")
    question = str(row["question"]) if "question" in row else _fields_text(row)
    choices = row.get("choices")
    answer = str(row["answer"])
    if not choices:
        return Example(id=row_id, question=question, answer=answer, fields=input_fields(dict(row))), "string"
    choices = tuple(str(c) for c in choices)
    if len(choices) > len(LETTERS):
        raise UsageError(f"task {name!r}, row {i}: {len(choices)} choices, at most {len(LETTERS)} "
                         f"(one letter each, A to Z)")
    if answer in choices:
        letter, text = LETTERS[choices.index(answer)], answer
    elif answer in LETTERS[: len(choices)]:
        letter, text = answer, choices[LETTERS.index(answer)]
    else:
        raise UsageError(f"task {name!r}, row {i}: answer {answer!r} is neither a choice nor its letter")
    return Example(id=row_id, question=question, choices=choices, answer=letter, answer_text=text,
                   fields=input_fields(dict(row))), "choice"


def _fields_text(row: Mapping[str, Any]) -> str:
    return "\n".join(f"{k}: {v}" for k, v in input_fields(dict(row)).items())


def _open_row(name: str, i: int, row_id: str, row: Mapping[str, Any]) -> Example:
    """An open-ended row: its input fields and free-text reference(s)."""
    refs = row.get("references", row.get("reference"))
    refs = [] if refs is None else refs if isinstance(refs, (list, tuple)) else [refs]
    if not input_fields(dict(row)) or not all(isinstance(r, str) for r in refs):
        raise UsageError(f"task {name!r}, row {i}: an open-ended row needs an input field and text reference(s)")
    question = str(row["question"]) if "question" in row else _fields_text(row)
    return Example(id=row_id, question=question, references=tuple(refs), fields=input_fields(dict(row)))


def optimize(
    db: str | Path | EventLog,
    *,
    target: str | Task,
    source: Sequence[str | Task] = (),
    transfer: bool | None = None,
    model: str | None = None,
    objective: Objective | None = None,
    nodes: Mapping[str, Node] | None = None,
    insert_after: Mapping[str, str] | None = None,
    on_update: Callable[[Update], None] | None = None,
    template: Any = None,
    max_cost: float | None = None,
    max_rollouts: int | None = None,
    program: str | Callable[..., Any] | None = None,
    **config: Any,
) -> RunState:
    """Create and run one Transfer-Prompting run (or, ``transfer=False``, target-only); the final state.

    Args:
        db: the SQLite file (created if missing) or an open :class:`EventLog`.
        target, source: task names or paths, or :class:`Task` objects
            (e.g. from :func:`task_from_records`).
        transfer: default: True when ``source`` is given.
        model: spec for both proposer and scorer (or ``proposer=``/``scorer=``).
        objective: metrics -> float, replacing the weighted objective.
        nodes, insert_after: see :func:`tprompt.graph.build_graph`.
        on_update: receives the run's stream (events appended, progress).
        template: the prompt to optimize as you use it: a LangChain ``ChatPromptTemplate`` or a
            :class:`~tprompt.evaluator.template.ChatTemplate` (see docs/tasks.md); the scorer is sent it
            rendered on each row, and the proposer rewrites its system message(s).
        max_cost, max_rollouts: budgets of this execution, as ``run --max-cost``/``--max-rollouts``: USD of
            paid calls, or scorer calls on training examples. On reaching one the run pauses (its state's
            ``status`` is ``paused``) keeping every answer it paid for; resume it with a :class:`Runner`.
        program: your program whose named prompts the run optimizes (docs/programs.md), as ``run --program``:
            ``"MODULE:FUNCTION"``, or the function itself when it is defined at the top of an importable module
            (the run records its import path, so ``tprompt resume`` finds it). The run starts from the module's
            ``PROMPTS`` unless ``original_prompt`` names them.
        config: any other :class:`RunConfig` field (steps, candidates, ...).
    """
    options = ExecutionOptions(max_cost=max_cost, max_rollouts=max_rollouts)  # bad budgets: refused before any write
    tasks: dict[str, Task] = {}

    def name_of(t: str | Task) -> str:
        if isinstance(t, Task):
            tasks[t.name] = t
            return t.name
        return t

    values: dict[str, Any] = dict(config)
    if template is not None:
        values["template"] = template if isinstance(template, ChatTemplate) else template_from_langchain(template)
    values["target_task"] = name_of(target)
    if source:
        values["source_tasks"] = [name_of(t) for t in source]
    values["transfer"] = bool(source) if transfer is None else transfer
    if model is not None:
        values.setdefault("proposer", model)
        values.setdefault("scorer", model)
    if program is not None:
        values["program"] = program if isinstance(program, str) else program_ref(program)
    cfg = with_program(make_config(values, where="optimize()"), prompt_given="original_prompt" in values)
    log = db if isinstance(db, EventLog) else EventLog(db)
    try:
        # opened once: the run is created and run on the same resources
        run_id, resources = open_run(log, cfg, tasks=tasks, resources=RunResources.open(
            cfg, tasks=tasks, options=options, objective_fn=objective))
        graph = None
        if nodes or insert_after:
            graph = build_graph(transfer=cfg.transfer, judge=cfg.judge is not None, nodes=nodes, insert_after=insert_after)
        return Runner(log, run_id, tasks=tasks, objective=objective, graph=graph, options=options,
                      resources=resources).run(on_update)
    finally:
        if not isinstance(db, EventLog):
            log.close()


__all__ = ("optimize", "task_from_records")
