"""A prompt read from a file: text, a ``tprompt export``, or a template of chat messages.

:func:`read_prompt_source` reads any of them: a text file (the prompt), a
``tprompt export`` JSON file, a LangChain ``ChatPromptTemplate`` serialized
with ``langchain_core.load.dumps``, or a JSON/TOML/YAML file of messages with
``{field}`` placeholders (``{{field}}`` as MLflow and Langfuse write them is
read too); a template comes back as a :class:`ChatTemplate`. ``tprompt run
--prompt-file`` and a config file's ``prompt_file`` key read through it;
:func:`read_prompt_file` is the text-only reading ``eval --prompt-file`` uses.
``tprompt export`` (:mod:`tprompt.export`) writes the formats read here.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import UsageError
from .evaluator.prompts import SCORER_TEMPLATE
from .evaluator.template import ChatTemplate, from_messages

#: Suffixes of files read as the prompt's plain text.
TEXT_SUFFIXES = frozenset({"", ".txt", ".md", ".prompt", ".text"})
#: Suffixes of structured files: an export, or a template of messages.
STRUCTURED_SUFFIXES = frozenset({".json", ".toml", ".yaml", ".yml"})

#: The ``format`` field of a JSON export: how a file says it is one.
EXPORT_FORMAT = "tprompt.prompt"
#: Bumped when a field changes meaning or goes away (new fields do not bump it).
EXPORT_FORMAT_VERSION = 1
#: A prompt file larger than this is refused (a prompt is text of a few KB, not a data file).
MAX_PROMPT_FILE_BYTES = 1 << 20


def read_prompt_file(path: str | Path, *, what: str = "prompt file") -> str:
    """The prompt text in ``path``: a text file or a ``tprompt export`` of a prompt (see :func:`read_prompt_source`).

    Raises:
        UsageError: as :func:`read_prompt_source`, and for a file holding a template of several messages.
    """
    found = read_prompt_source(path, what=what, text_only=True)
    if isinstance(found, ChatTemplate):
        raise UsageError(f"{what} {path} is a prompt template of {len(found.messages)} messages, not one prompt text",
                         hint="`tprompt run --prompt-file` optimizes a template; here give a text file")
    return found


def read_prompt_source(path: str | Path, *, what: str = "prompt file", text_only: bool = False) -> str | ChatTemplate:
    """The prompt in ``path``: its text, or the template of chat messages it holds.

    * ``.txt``, ``.md``, ``.prompt`` or no suffix: the prompt itself, stripped.
    * ``.json``: a ``tprompt export`` (the user's template it was scored in,
      else its prompt; ``text_only``: its prompt), a LangChain ``ChatPromptTemplate`` (``langchain_core.load.dumps``),
      or ``{"messages": [...]}`` / a list of messages.
    * ``.toml``, ``.yaml``, ``.yml``: ``messages`` (a list of ``{role, content,
      optimize?}``) and optionally ``name``.

    Only regular files are read (a FIFO or a device would hang or never end),
    up to :data:`MAX_PROMPT_FILE_BYTES`.

    Raises:
        UsageError: one line naming the file: unreadable, empty, an unknown suffix, a syntax error, or a
            template no run can use (a bad placeholder, no message the proposer may rewrite).
    """
    p = Path(path)
    suffix = p.suffix.lower()
    try:
        if not p.is_file():
            reason = "no such file" if not p.exists() else "not a regular file"
            raise UsageError(f"cannot read {what} {p}: {reason}", hint="give the path of a text or JSON file")
        if p.stat().st_size > MAX_PROMPT_FILE_BYTES:
            raise UsageError(f"{what} {p} is larger than {MAX_PROMPT_FILE_BYTES >> 20} MB",
                             hint="a prompt file holds one prompt")
        if suffix not in TEXT_SUFFIXES | STRUCTURED_SUFFIXES:
            raise UsageError(f"{what} {p}: unknown format {p.suffix!r}",
                             hint="give a .txt file (the prompt) or a .json, .toml or .yaml template or export")
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {what} {p}: {exc}") from exc
    if suffix in STRUCTURED_SUFFIXES:
        found = _structured(text, p, what, text_only)
    else:
        found = text.strip()
    if isinstance(found, str) and not found.strip():
        raise UsageError(f"{what} {p} is empty", hint="write the prompt into it")
    return found


def _structured(text: str, p: Path, what: str, text_only: bool) -> str | ChatTemplate:
    suffix = p.suffix.lower()
    try:
        if suffix == ".json":
            data: Any = json.loads(text)
        elif suffix == ".toml":
            data = tomllib.loads(text)
        else:
            from ._yaml import load_yaml

            data = load_yaml(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{what} {p}: not valid {suffix[1:].upper()} ({_first_line(exc)})",
                         hint="fix the syntax at the place named") from exc
    except Exception as exc:  # yaml.YAMLError: imported lazily, so not nameable above
        raise UsageError(f"{what} {p}: not valid YAML ({_first_line(exc)})",
                         hint="fix the syntax at the place named") from exc
    where = f"{what} {p}"
    if isinstance(data, Mapping) and data.get("lc") == 1:
        return template_from_langchain_dict(data, where=where, text_only=text_only)
    if isinstance(data, Mapping) and data.get("format") == EXPORT_FORMAT:
        return _prompt_of_export(data, where, text_only)
    if isinstance(data, Mapping) and data and all(isinstance(v, Mapping) and v.get("lc") == 1 for v in data.values()):
        return _program_set_of_langchain(data, where, text_only)
    if isinstance(data, Mapping) and data.get("type") in ("text", "chat") and "prompt" in data:
        return _langfuse(data, where)
    if isinstance(data, list):
        return from_messages(data, name=p.stem, where=where)
    if isinstance(data, Mapping) and "messages" in data:
        unknown = sorted(set(data) - {"messages", "name"})
        if unknown:
            raise UsageError(f"{where}: unknown key(s) {', '.join(unknown)}", hint="a template has messages and name")
        name = data.get("name") or p.stem
        return from_messages(data["messages"], name=str(name), where=where)
    raise UsageError(f"{where} is not a prompt exported by tprompt (no \"format\": \"{EXPORT_FORMAT}\") "
                     "nor a template (no \"messages\")",
                     hint="write {\"messages\": [{\"role\": \"system\", \"content\": \"...\"}, ...]}, "
                          "or give the prompt as a .txt file")


def _langfuse(data: Mapping[str, Any], where: str) -> str | ChatTemplate:
    """A Langfuse prompt (``tprompt export --format langfuse``, or Langfuse's own): ``{{var}}`` read back as ``{var}``."""
    prompt = data.get("prompt")
    if data.get("type") == "text" and isinstance(prompt, str):
        return from_double_braces(prompt)
    if data.get("type") == "chat" and isinstance(prompt, list):
        messages = [{**m, "content": from_double_braces(m["content"])} if isinstance(m, Mapping) and
                    isinstance(m.get("content"), str) else m for m in prompt]
        return from_messages(messages, name=str(data.get("name") or "template"), where=where)
    raise UsageError(f"{where}: a Langfuse prompt of type {data.get('type')!r} whose prompt is not "
                     f"{'text' if data.get('type') == 'text' else 'a list of messages'}",
                     hint="type text holds a string, type chat a list of {role, content}")


def from_double_braces(template: str) -> str:
    """A registry template (``{{var}}``: MLflow, Langfuse) as a tprompt template (``{var}``, literal braces doubled)."""
    parts = re.split(r"(\{\{\s*[A-Za-z_][A-Za-z0-9_]*\s*\}\})", template)
    return "".join("{" + part[2:-2].strip() + "}" if i % 2 else part.replace("{", "{{").replace("}", "}}")
                   for i, part in enumerate(parts))


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def template_from_langchain_dict(data: Mapping[str, Any], *, where: str,
                                 text_only: bool = False) -> str | ChatTemplate:
    """A ``langchain_core.load.dumps`` of a ``ChatPromptTemplate`` (tprompt's export or the user's own)."""
    meta = ((data.get("kwargs") or {}).get("metadata") or {}).get("tprompt")
    if isinstance(meta, Mapping) and meta.get("format") == EXPORT_FORMAT:
        return _prompt_of_export(meta, where, text_only)
    from langchain_core.load import loads

    try:
        obj = loads(json.dumps(data), allowed_objects="core")
    except Exception as exc:  # langchain raises several kinds for a file it cannot rebuild
        raise UsageError(f"{where}: not a LangChain object langchain_core.load.loads can read ({_first_line(exc)})",
                         hint="write it with langchain_core.load.dumps(prompt_template)") from exc
    return template_from_langchain(obj, where=where)


def template_from_langchain(obj: Any, *, where: str = "the LangChain prompt", name: str = "template") -> ChatTemplate:
    """A :class:`ChatTemplate` from a LangChain ``ChatPromptTemplate`` (its messages, in order).

    f-string and mustache message templates are read; a ``MessagesPlaceholder``
    (a list of messages from the row) is refused. Partial variables (the
    template's and a message's own, ``.partial(lang="en")``) are filled in as
    LangChain fills them; one given as a function is refused (a run scores one fixed template).

    Raises:
        UsageError: not a ChatPromptTemplate, or a message of a kind tprompt cannot render.
    """
    from langchain_core.messages import BaseMessage
    from langchain_core.prompts import ChatPromptTemplate, PromptTemplate

    if not isinstance(obj, ChatPromptTemplate):
        raise UsageError(f"{where}: a {type(obj).__name__}, not a ChatPromptTemplate",
                         hint="give a ChatPromptTemplate (ChatPromptTemplate.from_messages([...]))")
    roles = {"system": "system", "human": "user", "ai": "assistant"}
    messages: list[dict[str, Any]] = []
    for i, m in enumerate(obj.messages, 1):
        if isinstance(m, BaseMessage):  # a literal message: its braces are text
            role, content = m.type, str(m.content).replace("{", "{{").replace("}", "}}")
        elif isinstance(prompt := getattr(m, "prompt", None), PromptTemplate):
            role = {"SystemMessagePromptTemplate": "system", "HumanMessagePromptTemplate": "human",
                    "AIMessagePromptTemplate": "ai"}.get(type(m).__name__, "")
            content = prompt.template
            if prompt.template_format == "mustache":
                from .evaluator.template import from_double

                content = from_double(content)
            elif prompt.template_format != "f-string":
                raise UsageError(f"{where}: message {i} is a {prompt.template_format} template",
                                 hint="use f-string or mustache message templates")
            content = _fill_partials(content, {**prompt.partial_variables, **obj.partial_variables}, f"{where}: message {i}")
        else:
            raise UsageError(f"{where}: message {i} is a {type(m).__name__}, which tprompt cannot render on a row",
                             hint="use system, human and ai message templates")
        if role not in roles:
            raise UsageError(f"{where}: message {i} has role {role!r}", hint="use system, human and ai messages")
        messages.append({"role": roles[role], "content": content})
    return from_messages(messages, name=name, where=where)


def _fill_partials(content: str, values: Mapping[str, Any], where: str) -> str:
    """``content`` (an f-string template) with its partial variables' values in, as literal text."""
    import string

    if not values:
        return content
    out = []
    try:
        parsed = list(string.Formatter().parse(content))
    except ValueError:
        return content  # a bad placeholder: from_messages says where
    for literal, field, spec, conv in parsed:
        out.append(literal.replace("{", "{{").replace("}", "}}"))
        if field is None:
            continue
        if field not in values:
            out.append("{" + field + (f"!{conv}" if conv else "") + (f":{spec}" if spec else "") + "}")
            continue
        value = values[field]
        if callable(value):
            raise UsageError(f"{where}: partial variable {{{field}}} is a function; tprompt scores one fixed template",
                             hint=f"give {field} a value (prompt.partial({field}=...)), or make it a field of the rows")
        out.append(str(value).replace("{", "{{").replace("}", "}}"))
    return "".join(out)


def _program_set_of_langchain(data: Mapping[str, Any], where: str, text_only: bool) -> str | ChatTemplate:
    """The prompt set of a program's LangChain export (templates keyed by prompt name; each carries the export)."""
    first = next(iter(data.values()))
    meta = ((first.get("kwargs") or {}).get("metadata") or {}).get("tprompt")
    if not (isinstance(meta, Mapping) and meta.get("format") == EXPORT_FORMAT and "prompts" in meta):
        raise UsageError(f"{where}: LangChain objects keyed by name, not a program's prompts exported by tprompt",
                         hint="give one ChatPromptTemplate (langchain_core.load.dumps(prompt_template)), or "
                              "tprompt export RUN --format langchain of a program's run")
    return _prompt_of_export(meta, where, text_only)


def _prompt_of_export(data: Mapping[str, Any], where: str, text_only: bool) -> str | ChatTemplate:
    """The prompt of a ``tprompt export``, or the user's template it was scored in.

    A prompt scored under a bundled task's Q&A template comes back as its text
    (a new run sends it under the Q&A template again).
    """
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:  # damaged or hand-written, not newer
        raise UsageError(f"{where}: its \"format_version\" is {version!r}, not a whole number from 1",
                         hint=f"export it again with tprompt export (it writes format_version {EXPORT_FORMAT_VERSION})")
    if version > EXPORT_FORMAT_VERSION:
        raise UsageError(f"{where}: export format version {version!r}, this tprompt reads up to "
                         f"{EXPORT_FORMAT_VERSION}", hint="upgrade tprompt")
    template = data.get("template")
    declared = isinstance(template, Mapping) and template.get("name") == SCORER_TEMPLATE.name
    if template is not None and not text_only and not declared:
        try:
            return ChatTemplate.model_validate(template)
        except ValueError as exc:
            raise UsageError(f"{where}: its \"template\" is not a template ({_first_line(exc)})",
                             hint="export it again with tprompt export") from exc
    prompt = data.get("prompt")
    if not isinstance(prompt, str):
        raise UsageError(f"{where}: its \"prompt\" is not text", hint="export it again with tprompt export")
    return prompt


__all__ = (
    "EXPORT_FORMAT", "EXPORT_FORMAT_VERSION", "MAX_PROMPT_FILE_BYTES", "read_prompt_file", "read_prompt_source",
    "template_from_langchain",
)
