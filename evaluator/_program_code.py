"""What runs a user's program's own code, in the program worker (:mod:`.program_worker`): importing it and
checking it against the contract, reading what a row returned, what it printed. Kept apart from
:mod:`.program` (the run's side) so that the worker imports none of the run's machinery.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any, Literal

from ..errors import ConfigError

#: How a program answers a row: called with it (``run``), or built into a Runnable that is invoked on it (``build``).
ProgramKind = Literal["run", "build"]
#: Longest error summary kept with a failed answer.
MAX_ERROR_CHARS = 300


class ProgramOutput:
    """What a program printed while answering (kept off the terminal): how many lines, and the first."""

    def __init__(self) -> None:
        self.lines = 0
        self.first: str | None = None
        self._lock = threading.Lock()

    def add(self, text: str) -> None:
        with self._lock:
            self.lines += text.count("\n")
            if self.first is None and text.strip():
                self.first = one_line_text(text)

    def add_counted(self, lines: int, first: str | None) -> None:
        """What one row printed, counted where it ran (the program worker)."""
        with self._lock:
            self.lines += lines
            if self.first is None and first:
                self.first = first


def import_program(ref: str) -> tuple[Callable[..., Any], dict[str, str], ProgramKind]:
    """Import ``MODULE:FUNCTION`` (the working folder first) and check it: its function, PROMPTS and kind.

    Called in the program worker (:mod:`.program_worker`): importing runs the user's code.

    Raises:
        ConfigError: one line: the module does not import, the function is missing or not callable, or the
            module's ``PROMPTS`` is missing or not a non-empty ``{name: text}`` dict.
    """
    module_name, _, attr = ref.partition(":")
    where = f"program {ref}"
    if not module_name or not attr:
        raise ConfigError(f"{where}: expected MODULE:FUNCTION, e.g. mypkg.app:run", key="program")
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:  # whatever the module's import raised (sys.exit too): one line
        raise ConfigError(f"{where}: module {module_name} does not import ({one_line(exc)})",
                          hint="run tprompt from the folder that holds the module, or install its package",
                          key="program") from exc
    finally:
        if added:
            sys.path.remove(cwd)
    fn = getattr(module, attr, None)
    if fn is None:
        raise ConfigError(f"{where}: module {module_name} has no {attr}",
                          hint="name the function: MODULE:FUNCTION", key="program")
    if not callable(fn):
        raise ConfigError(f"{where}: {attr} is a {type(fn).__name__}, not a function",
                          hint="name a function run(inputs, *, prompts, llm)", key="program")
    kind = _kind_of(fn)
    if kind is None:
        raise ConfigError(f"{where}: {attr} takes ({', '.join(inspect.signature(fn).parameters)}), neither "
                          "run(inputs, *, prompts, llm) nor build(prompts, llm)",
                          hint="name its parameters as in one of the two contracts of docs/programs.md", key="program")
    prompts = getattr(module, "PROMPTS", None)
    if not (isinstance(prompts, Mapping) and prompts and all(
            isinstance(k, str) and k.strip() and isinstance(v, str) for k, v in prompts.items())):
        found = "none" if prompts is None else type(prompts).__name__
        raise ConfigError(f"{where}: module {module_name} needs PROMPTS, a dict of prompt name to initial text "
                          f"(found {found})", hint='e.g. PROMPTS = {"answer": "Answer the question."}', key="program")
    return fn, dict(prompts), kind


def _kind_of(fn: Callable[..., Any]) -> ProgramKind | None:
    """``run`` for a function of ``inputs`` (or one whose signature cannot be read), ``build`` for a factory of
    ``(prompts, llm)`` (no ``inputs``), None for anything else."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a builtin or C callable: taken at its word as run(inputs, *, prompts, llm)
        return "run"
    if "inputs" in params:
        return "run"
    required = {n for n, p in params.items() if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    return "build" if {"prompts", "llm"} <= set(params) and required <= {"prompts", "llm"} else None


def one_line(exc: BaseException) -> str:
    """An exception as one short line: ``Type: first line of its message``."""
    text = str(exc).strip().splitlines()
    return one_line_text(f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__)


def one_line_text(text: str) -> str:
    """The first non-empty line of ``text``, at most :data:`MAX_ERROR_CHARS` long."""
    line = next((t.strip() for t in text.splitlines() if t.strip()), "")
    return line if len(line) <= MAX_ERROR_CHARS else line[: MAX_ERROR_CHARS - 1] + "…"


def answer_of(result: Any) -> tuple[str | None, str | None]:
    """(output, error) of what the program returned: a string, a message (its text content), or a dict (a
    LangGraph state) whose ``answer`` is one of those."""
    if isinstance(result, Mapping):
        if "answer" not in result:
            return None, f"the program returned a dict without an 'answer' field (keys: {', '.join(map(str, result))})"
        answer = result["answer"]
        return _text_of(answer) or str(answer), None
    text = _text_of(result)
    if text is not None:
        return text, None
    return None, f"the program returned a {type(result).__name__}, not a string or a dict with an 'answer'"


def _text_of(value: Any) -> str | None:
    """A string as it is; a LangChain message's text (``content``, or ``text`` for a list of parts); else None."""
    if isinstance(value, str):
        return value
    content = getattr(value, "content", None)
    if isinstance(content, str):
        return content
    text = getattr(value, "text", None) if content is not None else None
    return str(text) if isinstance(text, str) else None  # (langchain's TextAccessor is a str)


__all__ = ("MAX_ERROR_CHARS", "ProgramKind", "ProgramOutput", "answer_of", "import_program", "one_line", "one_line_text")
