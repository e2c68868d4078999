"""The LLM judge's prompts, declared as data (see :class:`tprompt.agents.prompts.PromptTemplate`)."""

from __future__ import annotations

from ..agents.prompts import PromptTemplate

#: The LLM judge's request: one answer, every criterion of the rubric (the system message is the rubric's instruction).
JUDGE_PROMPT = PromptTemplate(
    name="judge.request",
    version=1,
    text="""Judge the answer below on each criterion with a whole-number score from {low} (worst) to {high} (best).

Criteria:
{criteria}

Task: {task_description}
Instruction the answer was written under: {prompt}

Question:
{question}
{reference}
Answer to judge:
{answer}

Reply with exactly one line per criterion, in this form and nothing else:
{reply_format}""",
)

JUDGE_CRITERION = PromptTemplate(name="judge.criterion", version=1, text="- {name}: {description}")

JUDGE_REPLY_LINE = PromptTemplate(name="judge.reply_line", version=1, text="{name}: <score> | <one short sentence why>")

#: Every template the judge's request is rendered from (the rubric's own ref is added per request).
JUDGE_TEMPLATES: tuple[str, ...] = tuple(t.ref for t in (JUDGE_PROMPT, JUDGE_CRITERION, JUDGE_REPLY_LINE))


__all__ = ("JUDGE_CRITERION", "JUDGE_PROMPT", "JUDGE_REPLY_LINE", "JUDGE_TEMPLATES")
