"""The reflective proposer style: improve one parent prompt from its failures and their feedback.

GEPA (Agrawal et al., arXiv 2507.19457) shows the proposer a minibatch of a
parent prompt's traces with textual feedback and asks for an improved prompt,
instead of the paper's (prompt, score) history. Here a trace is one training
example the parent was scored on: the question with its gold answer, what the
scorer answered, and the feedback recorded for it (wrong vs gold, a metric's
text, the judge's rationale). The minibatch puts failures first; only training
examples are ever shown (the held-out test split never reaches the proposer).

The request is declared data (:data:`REFLECT_PROMPT`, :data:`REFLECT_EXAMPLE`),
named by version in every request, like the paper style's templates.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from .prompts import PROPOSER_SYSTEM, PromptTemplate

REFLECT_PROMPT = PromptTemplate(
    name="proposer.reflect",
    version=1,
    text="""Your task is to improve an instruction for a language model that answers questions of this task:
{task_description}

{template}The current instruction:
<INS>{parent}</INS>

Below are questions the model answered under it, with the correct answer, the model's answer and feedback, \
the failures first:

{examples}

Work out what the failures have in common and what the instruction should say to avoid them. Then write one \
improved instruction that fixes them and keeps what worked. Keep it under 80 words. \
Write only the instruction, between <INS> and </INS>.""",
)

REFLECT_EXAMPLE = PromptTemplate(
    name="proposer.reflect_example",
    version=1,
    text="""### Example {n} ({verdict})
{exemplar}
Model's answer: {answer}
Feedback: {feedback}""",
)

#: Every template a reflective request is rendered from.
REFLECTIVE_TEMPLATES: tuple[str, ...] = tuple(t.ref for t in (PROPOSER_SYSTEM, REFLECT_PROMPT, REFLECT_EXAMPLE))

#: Longest model answer quoted in a trace.
MAX_ANSWER_CHARS = 300


@dataclass(frozen=True, slots=True)
class Trace:
    """One training example the parent was scored on, as the reflective proposer sees it.

    ``exemplar`` is the question with its gold answer (rendered by
    :func:`tprompt.agents.proposer.format_exemplar`), ``score`` the mean of its
    per-example values in 0..1 (1 is best), ``feedback`` what was recorded on it.
    """

    task: str
    example_id: str
    exemplar: str
    answer: str
    score: float
    feedback: tuple[str, ...]

    @property
    def failed(self) -> bool:
        return self.score < 1.0


def minibatch(traces: Sequence[Trace], k: int, rng: random.Random) -> list[Trace]:
    """``k`` traces, failures first (lowest score first), ties in an order drawn from ``rng``."""
    order = list(traces)
    rng.shuffle(order)
    order.sort(key=lambda t: t.score)  # stable: equal scores keep the drawn order
    return order[:k]


def build_reflection(*, task_description: str, parent: str, traces: Sequence[Trace], template: str = "") -> str:
    """The reflective request's text for ``parent`` over ``traces`` (in the order given).

    ``template`` is the user's template section (:func:`tprompt.agents.proposer.template_section`), or "".
    """
    items = []
    for n, t in enumerate(traces, 1):
        answer = " ".join(t.answer.split())
        if len(answer) > MAX_ANSWER_CHARS:
            answer = answer[: MAX_ANSWER_CHARS - 1] + "…"
        items.append(REFLECT_EXAMPLE.render(
            n=str(n), verdict="failed" if t.failed else "passed", exemplar=t.exemplar, answer=answer or "(empty)",
            feedback="; ".join(t.feedback) or ("none" if t.failed else "correct"),
        ))
    return REFLECT_PROMPT.render(task_description=task_description.strip(), template=template, parent=parent,
                                 examples="\n\n".join(items) or "(no scored examples)")


__all__ = ("REFLECTIVE_TEMPLATES", "REFLECT_EXAMPLE", "REFLECT_PROMPT", "Trace", "build_reflection", "minibatch")
