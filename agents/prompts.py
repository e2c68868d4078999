"""Prompts the agents send, declared as data: a name, a version and a template.

Declaring them (instead of building strings inline) keeps them intact in
transcripts and in the cache key: every request names the templates it was
rendered from (``PromptTemplate.ref``, ``name@vN``, in the request's
``templates``), so changing a template's text means bumping its version, and
every cached answer to the old version stays valid for the old one.
"""

from __future__ import annotations

import string
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class PromptTemplate:
    """A prompt with named ``{fields}``; ``render`` refuses missing or extra fields."""

    name: str
    version: int
    text: str

    @property
    def ref(self) -> str:
        """``name@vN``: how a request names the template it was rendered from (transcripts, cache key)."""
        return f"{self.name}@v{self.version}"

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(f for _, f, _, _ in string.Formatter().parse(self.text) if f)

    def render(self, **values: str) -> str:
        missing = self.fields - values.keys()
        extra = values.keys() - self.fields
        if missing or extra:
            raise ValueError(f"{self.name} v{self.version}: missing {sorted(missing)}, unexpected {sorted(extra)}")
        return self.text.format(**values)


PROPOSER_SYSTEM = PromptTemplate(
    name="proposer.system",
    version=1,
    text="You write instructions (system prompts) that make a language model answer questions accurately, "
    "in the requested format, and with honest confidence.",
)

#: The reference prompt (OPRO's meta-prompt, extended with transferred prompts in stage 2).
META_PROMPT = PromptTemplate(
    name="proposer.meta",
    version=1,
    text="""Your task is to write an instruction for a language model that answers questions of this task:
{task_description}

Example questions with their correct answers:
{exemplars}

{transferred}Earlier instructions and their scores (0 to 100, higher is better), from worst to best:
{history}

Write one new instruction that is different from all of the above and would get a higher score. \
It should say how to reason and how to answer. Keep it under 80 words. \
Write only the instruction, between <INS> and </INS>.""",
)

TRANSFERRED_SECTION = PromptTemplate(
    name="proposer.transferred",
    version=1,
    text="""These instructions worked best on related tasks ({source_tasks}) and were transferred to this one:
{prompts}

""",
)

#: The user's template, shown when the run scores one (embedded where the transferred section goes).
TEMPLATE_SECTION = PromptTemplate(
    name="proposer.template",
    version=1,
    text="""The instruction is one message of this prompt template; each {{field}} is filled from a row of the task, \
and <INSTRUCTION> marks the message you write:
{messages}
{keep}
""",
)

#: A program's prompts, shown when the run optimizes a program (embedded where the transferred section goes).
PROGRAM_SECTION = PromptTemplate(
    name="proposer.program",
    version=1,
    text="""The instruction is the prompt named "{name}" of a program that answers each question in several model \
calls, one prompt each. The program's prompts now read, <INSTRUCTION> marking the one you write:
{prompts}
{keep}
""",
)

HISTORY_ITEM = PromptTemplate(name="proposer.history_item", version=1, text="Instruction: {text}\nScore: {score}")

EXEMPLAR_ITEM = PromptTemplate(name="proposer.exemplar", version=1, text="Q: {question}\nA: {answer}")

#: Every template the proposer's request is rendered from (the meta-prompt embeds the last three).
PROPOSER_TEMPLATES: tuple[str, ...] = tuple(
    t.ref for t in (PROPOSER_SYSTEM, META_PROMPT, TRANSFERRED_SECTION, HISTORY_ITEM, EXEMPLAR_ITEM)
)

__all__ = (
    "EXEMPLAR_ITEM",
    "HISTORY_ITEM",
    "META_PROMPT",
    "PROPOSER_SYSTEM",
    "PROGRAM_SECTION",
    "PROPOSER_TEMPLATES",
    "PromptTemplate",
    "TEMPLATE_SECTION",
    "TRANSFERRED_SECTION",
)
