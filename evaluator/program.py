"""The user's program: a function with named prompts, answering a task's rows through the ``llm`` tprompt gives it.

The contract (docs/programs.md)::

    PROMPTS = {"summarize": "...", "answer": "..."}   # module level: each prompt's initial text

    def run(inputs: dict, *, prompts: dict[str, str], llm) -> str | dict: ...
    # or a factory, told apart by its parameters:
    def build(prompts: dict[str, str], llm) -> Runnable: ...   # invoked on each row's inputs

``inputs`` are the row's input fields (:func:`.template.row_values`), ``prompts``
the candidate's texts by name, ``llm`` a LangChain chat model whose every call
goes through the run's recorder (cached, one transcript row under agent
``program``). The program's output, a string or a dict's ``answer``, is the
answer the metrics score. A program is named by import path,
``MODULE:FUNCTION``, imported from the working folder first (as metric
modules are); :func:`load_program` is the one place it is imported and its
problems worded.

A request names the prompts whose text it carries (``program.NAME@<sha12>`` in
its ``templates``: in the transcript and the cache key): a prompt is in a
request when every literal piece of its text (around ``{field}`` placeholders
the program may fill) is in the request's messages.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import string
import sys
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..config import DEFAULT_PROGRAM_TIMEOUT
from ..errors import ConfigError, UsageError
from ._program_code import (
    MAX_ERROR_CHARS,
    ProgramKind,
    ProgramOutput,
    answer_of,
    import_program,
    one_line,
)
from .parsing import MISSING_CONFIDENCE, gold_answer, is_correct, parse_reply
from .task_model import Example, Task
from .template import row_values

if TYPE_CHECKING:
    from ..models import ChatBackend
    from ..models.recorder import CallSite
    from .scoring import ScoredAnswer

#: The agent a program's calls are filed under (transcripts, spend).
PROGRAM_AGENT = "program"


@dataclass(frozen=True, slots=True)
class Program:
    """A loaded program: its import path and its declared prompts (in declaration order); its function lives in
    the program worker (:mod:`.program_worker`), which imported it."""

    ref: str
    prompts: Mapping[str, str]
    #: ``run``: ``fn(inputs, *, prompts, llm)`` answers a row; ``build``: ``fn(prompts, llm)`` returns a Runnable
    #: (a LangChain runnable, a compiled LangGraph graph) whose ``invoke(inputs)`` answers it
    kind: ProgramKind = "run"
    #: what it printed while answering (kept in the program log, off the terminal and the ``--json`` output)
    output: ProgramOutput = field(default_factory=ProgramOutput, compare=False)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.prompts)

    @property
    def original_text(self) -> str:
        """The candidate text of the declared prompts (what a run starts from)."""
        from ..stores.events import prompt_set_text

        return prompt_set_text(dict(self.prompts))

    def prompt_set(self, text: str) -> dict[str, str]:
        """The named prompts a candidate's text holds (it must name exactly this program's prompts).

        Raises:
            UsageError: ``text`` is not a JSON object of this program's prompt names to texts.
        """
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if not (isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
                and list(value) == list(self.names)):
            raise UsageError(f"prompt {text[:60]!r} is not a set of {self.ref}'s prompts ({', '.join(self.names)})",
                             hint='a program\'s prompt is a JSON object {"name": "text", ...} naming each of its PROMPTS')
        return dict(value)


def load_program(ref: str, *, timeout: float = DEFAULT_PROGRAM_TIMEOUT) -> Program:
    """Import ``MODULE:FUNCTION`` in the program worker (the working folder first) and check it against the contract.

    Raises:
        ConfigError: one line: the module does not import (raises, exits, or takes longer than ``timeout``),
            the function is missing or not callable, or the module's ``PROMPTS`` is missing or not a non-empty
            ``{name: text}`` dict.
    """
    from .program_worker import worker

    if ":" not in ref or not all(ref.partition(":")[::2]):
        raise ConfigError(f"program {ref}: expected MODULE:FUNCTION, e.g. mypkg.app:run", key="program")
    prompts, kind = worker().load(ref, timeout=timeout)
    return Program(ref=ref, prompts=prompts, kind="build" if kind == "build" else "run")


def program_ref(fn: Callable[..., Any]) -> str:
    """``MODULE:FUNCTION`` naming ``fn``, a function at the top of an importable module (what a run records).

    Raises:
        UsageError: ``fn`` has no such import path (a lambda, a nested function, a method, a function of
            ``__main__``), or that path names something else.
        ConfigError: its module does not load as a program's (:func:`load_program`: no ``PROMPTS``, ...).
    """
    module, name = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    ref = f"{module}:{name}"
    hint = ("define the function at the top of a module that imports from the working folder or your package, "
            "or pass program='MODULE:FUNCTION'")
    if not (isinstance(module, str) and isinstance(name, str)) or module == "__main__" or "<" in name or "." in name:
        raise UsageError(f"program {fn!r} has no import path a run can record ({ref})", hint=hint)
    if getattr(sys.modules.get(module), name, None) is not fn:
        raise UsageError(f"program {ref}: importing it gives another object than the function passed", hint=hint)
    load_program(ref)  # the worker imports it as a run will: its problems are one line now
    return ref


def prompt_ref(name: str, text: str) -> str:
    """``program.NAME@<sha12>``: a prompt as a request names it (the name and its text's version)."""
    return f"program.{name}@{hashlib.sha256(text.encode('utf-8')).hexdigest()[:12]}"


def prompt_names(request_body: str | None) -> list[str]:
    """The names of a program's prompts a recorded request carries (its ``program.NAME@<sha12>`` refs)."""
    refs = json.loads(request_body or "{}").get("templates", [])
    return [ref.removeprefix("program.").rpartition("@")[0] for ref in refs if ref.startswith("program.")]


def _pieces(text: str) -> list[str]:
    """The literal pieces of a prompt's text around its ``{field}`` placeholders (all of it if it has none)."""
    try:
        parts = [literal for literal, *_ in string.Formatter().parse(text)]
    except ValueError:  # not a format string: the program sends it as it is
        parts = [text]
    return [p.strip() for p in parts if p.strip()]


def prompts_in(prompts: Mapping[str, str], messages: Sequence[tuple[str, str]]) -> tuple[str, ...]:
    """The refs (:func:`prompt_ref`) of the prompts whose text is in ``messages``, in the program's order."""
    sent = "\n".join(content for _, content in messages)
    found = []
    for name, text in prompts.items():
        pieces = _pieces(text)
        if pieces and all(p in sent for p in pieces):
            found.append(prompt_ref(name, text))
    return tuple(found)


def answer_program(
    program: Program,
    text: str,
    examples: Sequence[Example],
    *,
    task: Task,
    model: ChatBackend,
    site: CallSite,
    progress: Callable[[int, int], None] | None = None,
    width: int = 1,
    timeout: float = DEFAULT_PROGRAM_TIMEOUT,
    abandoned: Callable[[], bool] | None = None,
) -> list[ScoredAnswer]:
    """``program`` answers ``examples`` of ``task`` under the candidate ``text`` (its prompt set).

    Each row is one call of the program in the program worker
    (:mod:`.program_worker`), up to ``width`` rows at once, each with its own
    ``llm`` whose calls are made here through ``site``; the answers come back in
    row order, whatever order they finish in. Its output is read as a reply to
    the user's own template is (:func:`.parsing.parse_reply`). A program that
    raises, exits, ends its worker or computes longer than ``timeout`` on a row
    gives a failed answer for it (wrong, its ``error`` the one-line reason), as
    does one that returns no answer, and the other rows are answered (rows that
    were running in a worker that died are run again, each alone).

    Raises:
        ModelCallFailed: a model call failed after retries (the run fails, resumably).
        CallsAbandoned: ``abandoned()`` turned True: the run is pausing (the worker is ended).
    """
    from ..models.chat_model import RecordedChatModel
    from .program_worker import WorkerLost, worker

    prompts = program.prompt_set(text)
    abandoned = abandoned or getattr(model, "abandoned", None)
    runner = worker()

    def attempt(ex: Example, alone: bool) -> ScoredAnswer:
        carried: set[str] = set()

        def refs(messages: Sequence[tuple[str, str]]) -> tuple[str, ...]:
            found = prompts_in(prompts, messages)
            carried.update(found)
            return found

        llm = RecordedChatModel(backend=model, site=site, prompt_refs=refs)
        output, error, lines, first = runner.run_row(program.ref, model.spec, dict(row_values(ex)), prompts, llm,
                                                     timeout=timeout, abandoned=abandoned, alone=alone)
        program.output.add_counted(lines, first)
        scored = _scored(ex, task, output, error, llm.call_ids)
        return scored.model_copy(update={"prompts": tuple(n for n in prompts if prompt_ref(n, prompts[n]) in carried)})

    def answer(ex: Example) -> ScoredAnswer:
        try:
            return attempt(ex, alone=width <= 1)
        except WorkerLost:  # another row ended the worker, or this one: run alone, a loss is this row's own
            return attempt(ex, alone=True)

    if progress:
        progress(0, len(examples))
    if width <= 1 or len(examples) <= 1:
        answers = []
        for ex in examples:
            answers.append(answer(ex))
            if progress:
                progress(len(answers), len(examples))
        return answers
    with ThreadPoolExecutor(max_workers=min(width, len(examples)), thread_name_prefix="tprompt-program") as pool:
        futures = [pool.submit(contextvars.copy_context().run, answer, ex) for ex in examples]
        try:
            for done, fut in enumerate(as_completed(futures), start=1):
                fut.result()  # a pause or a failed model call: raised now, the rows not started dropped
                if progress:
                    progress(done, len(examples))
        finally:
            for fut in futures:
                fut.cancel()
    return [fut.result() for fut in futures]


def _scored(ex: Example, task: Task, output: str | None, error: str | None, call_ids: Sequence[str]) -> ScoredAnswer:
    from .scoring import ScoredAnswer

    call_id = call_ids[-1] if call_ids else None
    if output is None:
        return ScoredAnswer(example_id=ex.id, raw="", parsed=None, followed_format=False, correct=False,
                            confidence=0.0, gold=gold_answer(ex, task), call_id=call_id, error=error)
    parsed = parse_reply(output, kind=task.kind, choices=ex.choices, answer_space=task.answer_space)
    if parsed.answer is None:
        confidence = 0.0
    elif parsed.confidence is None:
        confidence = MISSING_CONFIDENCE
    else:
        confidence = parsed.confidence
    return ScoredAnswer(example_id=ex.id, raw=output, parsed=parsed.answer, followed_format=parsed.followed_format,
                        correct=is_correct(parsed.answer, ex, task), confidence=confidence,
                        gold=gold_answer(ex, task), call_id=call_id)


__all__ = ("MAX_ERROR_CHARS", "PROGRAM_AGENT", "Program", "ProgramKind", "ProgramOutput", "answer_of", "answer_program",
           "import_program", "load_program", "one_line", "program_ref", "prompt_names", "prompt_ref", "prompts_in")
