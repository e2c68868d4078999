"""The user's prompt template: chat messages with ``{field}`` placeholders over a task's rows.

A :class:`ChatTemplate` is what a run scores and what ``tprompt export`` writes:
the scorer's request is the template rendered on a row, nothing added. Some of
its messages are *optimizable* (the proposer rewrites them); the others are
kept verbatim. By default the system messages without placeholders are
optimizable; a message's ``optimize`` flag overrides that. An optimizable
message with placeholders keeps them: a proposal that drops or invents one is
rejected (:meth:`ChatTemplate.placeholder_problem`).

A candidate prompt is the text of the optimizable messages: the message itself
when there is one, else a JSON list of them (:meth:`ChatTemplate.candidate_text`),
so the candidate recorded in the events holds everything the template needs.

Placeholders are Python/LangChain f-string ones (``{field}``, ``{{`` for a
literal brace). Files written for MLflow or Langfuse use ``{{field}}``; they
are read as such when no single-brace placeholder is in them
(:func:`from_messages`). Files are read in :mod:`tprompt.prompt_file`.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..errors import UsageError
from .task_model import LETTERS, Example

Role = Literal["system", "user", "assistant"]
_ROLES: dict[str, Role] = {"system": "system", "user": "user", "human": "user", "assistant": "assistant", "ai": "assistant"}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DOUBLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
#: Longest task description the proposer's prompt takes (characters).
MAX_DESCRIPTION_CHARS = 2000
#: Row fields a template may not name: the gold answer would be in the scorer's request.
GOLD_FIELDS = frozenset({"answer", "answer_text", "reference", "references", "id", "split", "pattern", "json_schema"})


class TemplateMessage(BaseModel):
    """One message of a template: a role, its text, and whether the proposer may rewrite it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Role
    content: str
    #: True: the proposer rewrites it; False: kept verbatim; None: the default rule (system without placeholders).
    optimize: bool | None = None

    @property
    def placeholders(self) -> tuple[str, ...]:
        return placeholders_of(self.content)

    @property
    def optimizable(self) -> bool:
        if self.optimize is not None:
            return self.optimize
        return self.role == "system" and not self.placeholders


class ChatTemplate(BaseModel):
    """A chat prompt template with named placeholders; some messages optimizable (see the module doc)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "template"
    messages: tuple[TemplateMessage, ...] = Field(min_length=1)

    @property
    def ref(self) -> str:
        """``template.NAME@<sha>``: the template a scorer request was rendered from (transcripts, cache key)."""
        digest = hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()
        return f"template.{self.name}@{digest[:12]}"

    @property
    def fields(self) -> tuple[str, ...]:
        """The row fields the template names, in order of first use."""
        seen: dict[str, None] = {}
        for m in self.messages:
            seen.update(dict.fromkeys(m.placeholders))
        return tuple(seen)

    @property
    def optimizable(self) -> tuple[int, ...]:
        """Indices of the messages the proposer rewrites."""
        return tuple(i for i, m in enumerate(self.messages) if m.optimizable)

    @property
    def original_text(self) -> str:
        """The candidate text of the template as given (its optimizable messages)."""
        return self.candidate_text([self.messages[i].content for i in self.optimizable])

    def candidate_text(self, contents: Sequence[str]) -> str:
        """A candidate prompt from the texts of the optimizable messages (one: itself; several: a JSON list)."""
        if len(contents) == 1:
            return contents[0]
        return json.dumps(list(contents), ensure_ascii=False)

    def contents(self, text: str) -> tuple[str, ...]:
        """The texts of the optimizable messages held by a candidate prompt (inverse of :meth:`candidate_text`)."""
        n = len(self.optimizable)
        if n == 1:
            return (text,)
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if not (isinstance(value, list) and len(value) == n and all(isinstance(v, str) for v in value)):
            raise UsageError(f"prompt {text[:60]!r} is not a list of {n} message texts for template {self.name}",
                             hint="the template has several optimizable messages; a prompt gives each one")
        return tuple(value)

    def with_text(self, text: str) -> ChatTemplate:
        """This template with its optimizable messages replaced by those of candidate ``text``."""
        new = list(self.messages)
        for i, content in zip(self.optimizable, self.contents(text)):
            new[i] = new[i].model_copy(update={"content": content})
        return self.model_copy(update={"messages": tuple(new)})

    def render(self, text: str, values: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
        """The messages of candidate ``text`` on a row's ``values``: exactly what the scorer is sent.

        An empty system message is left out (an empty prompt means no instruction).
        """
        out = []
        for m in self.with_text(text).messages:
            content = m.content.format_map(_Values(values)) if m.placeholders else m.content.replace(
                "{{", "{").replace("}}", "}")
            if m.role == "system" and not content.strip():
                continue
            out.append((m.role, content))
        return tuple(out)

    def placeholder_problem(self, text: str) -> str | None:
        """Why candidate ``text`` breaks the template's placeholders (None when it keeps them all, invents none)."""
        try:
            contents = self.contents(text)
        except UsageError as exc:
            return exc.message
        for i, content in zip(self.optimizable, contents):
            problem = placeholder_change(self.messages[i].content, content)
            if problem is not None:
                return problem
        return None

    def check(self, where: str) -> None:
        """Refuse a template no run can use: no optimizable message, or a placeholder naming a gold field."""
        if not self.optimizable:
            raise UsageError(
                f"{where}: no message the proposer may rewrite (no system message without placeholders, "
                "and none marked optimize = true)",
                hint='add a system message, or mark one message "optimize": true',
            )
        gold = sorted(set(self.fields) & GOLD_FIELDS)
        if gold:
            raise UsageError(f"{where}: the template names {', '.join(gold)}, which hold(s) the gold answer",
                             hint="a template names the row's input fields only")

    def check_rows(self, examples: Sequence[Example], where: str) -> None:
        """Refuse a template naming a field some row lacks (before anything is paid)."""
        for ex in examples:
            missing = [f for f in self.fields if f not in row_values(ex)]
            if missing:
                have = ", ".join(sorted(row_values(ex))) or "none"
                raise UsageError(
                    f"{where}: the template names {', '.join('{' + f + '}' for f in missing)}, "
                    f"which row {ex.id} lacks (its fields: {have})",
                    hint="rename the placeholder to one of the rows' fields, or add the field to every row",
                )


class _Values(dict[str, str]):
    def __missing__(self, key: str) -> str:
        raise UsageError(f"the template names {{{key}}}, which the row lacks")


def placeholders_of(content: str) -> tuple[str, ...]:
    """The ``{field}`` names in ``content`` in order (``{{`` is a literal brace).

    Raises:
        UsageError: unbalanced braces, or a placeholder that is not a plain name (``{a.b}``, ``{x:>3}``, ``{}``).
    """
    names: dict[str, None] = {}
    try:
        parsed = list(string.Formatter().parse(content))
    except ValueError as exc:
        raise UsageError(f"bad placeholder in {content[:60]!r}: {exc}",
                         hint="write {field} for a placeholder and {{ or }} for a literal brace") from exc
    for _, field, spec, conv in parsed:
        if field is None:
            continue
        if not _IDENT.match(field) or spec or conv:
            raise UsageError(f"bad placeholder {{{field}}} in {content[:60]!r}: a placeholder is a plain field name",
                             hint="write {field}; {{ or }} for a literal brace")
        names[field] = None
    return tuple(names)


def placeholder_change(before: str, after: str) -> str | None:
    """Why ``after`` cannot stand where ``before`` was: a ``{field}`` it drops or invents, or a bad placeholder
    in it (None: it keeps exactly ``before``'s). ``before`` is a message or prompt known to be well formed."""
    want = set(placeholders_of(before))
    try:
        got = set(placeholders_of(after))
    except UsageError as exc:
        return exc.message
    dropped, invented = sorted(want - got), sorted(got - want)
    if dropped:
        return f"drops placeholder(s) {', '.join('{' + f + '}' for f in dropped)}"
    if invented:
        return f"invents placeholder(s) {', '.join('{' + f + '}' for f in invented)}"
    return None


def row_values(example: Example) -> dict[str, str]:
    """The fields a template can name on a row: its own input fields, and ``options``/``letters`` with choices."""
    values = dict(example.fields) if example.fields else {"question": example.question}
    if example.choices:
        values.setdefault("options", "\n".join(f"{LETTERS[i]}) {c}" for i, c in enumerate(example.choices)))
        values.setdefault("letters", ", ".join(LETTERS[: len(example.choices)]))
    return values


def from_messages(raw: Sequence[Any], *, name: str, where: str) -> ChatTemplate:
    """A template from ``[{"role", "content", "optimize"?}, ...]`` or ``[(role, content), ...]``.

    ``{{field}}`` placeholders (MLflow, Langfuse) are read as ``{field}`` when
    the messages hold no single-brace placeholder.

    Raises:
        UsageError: naming ``where`` and the message at fault.
    """
    if not isinstance(raw, (list, tuple)) or not raw:
        raise UsageError(f"{where}: 'messages' must be a non-empty list of messages",
                         hint='e.g. [{"role": "system", "content": "..."}, {"role": "user", "content": "{question}"}]')
    items: list[tuple[Role, str, bool | None]] = []
    for i, m in enumerate(raw, 1):
        if isinstance(m, (list, tuple)) and len(m) == 2:
            role, content, optimize = m[0], m[1], None
        elif isinstance(m, Mapping):
            unknown = sorted(set(m) - {"role", "content", "optimize"})
            if unknown:
                raise UsageError(f"{where}: message {i} has unknown key(s) {', '.join(unknown)}",
                                 hint="a message has role, content and optionally optimize (true/false)")
            role, content, optimize = m.get("role"), m.get("content"), m.get("optimize")
        else:
            raise UsageError(f"{where}: message {i} is not an object with role and content")
        if not isinstance(role, str) or role.lower() not in _ROLES:
            raise UsageError(f"{where}: message {i} has role {role!r}", hint="use system, user or assistant")
        if not isinstance(content, str):
            raise UsageError(f"{where}: message {i} has no text content")
        if optimize is not None and not isinstance(optimize, bool):
            raise UsageError(f"{where}: message {i}: optimize must be true or false, not {optimize!r}")
        items.append((_ROLES[role.lower()], content, optimize))
    if any(_DOUBLE.search(c) for _, c, _ in items) and not any(_single_braced(c) for _, c, _ in items):
        items = [(r, from_double(c), o) for r, c, o in items]
    messages = []
    for i, (role, content, optimize) in enumerate(items, 1):
        try:
            placeholders_of(content)
        except UsageError as exc:
            raise UsageError(f"{where}: message {i}: {exc.message}", hint=exc.hint) from exc
        messages.append(TemplateMessage(role=role, content=content, optimize=optimize))
    template = ChatTemplate(name=name, messages=tuple(messages))
    template.check(where)
    return template


def _single_braced(content: str) -> bool:
    return bool(re.search(r"(?<!\{)\{[A-Za-z_][A-Za-z0-9_]*\}(?!\})", content))


def from_double(content: str) -> str:
    """``{{field}}`` -> ``{field}``, other braces escaped."""
    parts = _DOUBLE.split(content)
    out = []
    for i, part in enumerate(parts):
        out.append("{" + part + "}" if i % 2 else part.replace("{", "{{").replace("}", "}}"))
    return "".join(out)


__all__ = (
    "GOLD_FIELDS", "MAX_DESCRIPTION_CHARS", "ChatTemplate", "TemplateMessage", "from_double", "from_messages",
    "placeholder_change", "placeholders_of", "row_values",
)
