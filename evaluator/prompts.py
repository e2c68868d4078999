"""The scorer's user message, declared as data (a template with a version).

The candidate prompt is the system message; the user message is built here from
the question, its lettered options and the demanded answer format. Its name and
version (``scorer.user@v1``) are part of every scorer request (its
``templates``), so they show in transcripts and are in the cache key.
"""

from __future__ import annotations

from dataclasses import dataclass

from .task_model import LETTERS, Example, Task
from .template import ChatTemplate, TemplateMessage


@dataclass(frozen=True, slots=True)
class ScorerTemplate:
    """The user message the scorer model answers under a candidate prompt."""

    name: str
    version: int
    question: str  # {question}
    options: str  # {options}: one "A) text" per line
    format_choice: str  # {letters}
    format_number: str
    format_space: str  # {space}
    format_free: str
    format_logprob: str  # {letters}: logprob mode reads the answer letter directly

    @property
    def ref(self) -> str:
        """``name@vN``: how a scorer request names its template (transcripts, cache key)."""
        return f"{self.name}@v{self.version}"


SCORER_TEMPLATE = ScorerTemplate(
    name="scorer.user",
    version=1,
    question="Question: {question}",
    options="Options:\n{options}",
    format_choice=(
        "Reply in exactly this format:\nAnswer: <one letter from {letters}>\n"
        "Confidence: <0-100>%"
    ),
    format_number="Reply in exactly this format:\nAnswer: <a number>\nConfidence: <0-100>%",
    format_space="Reply in exactly this format:\nAnswer: <one of {space}>\nConfidence: <0-100>%",
    format_free="Reply in exactly this format:\nAnswer: <your short answer>\nConfidence: <0-100>%",
    format_logprob="Reply with the letter of the correct option ({letters}).",
)


def declared_template(task: Task, *, logprob: bool = False, template: ScorerTemplate = SCORER_TEMPLATE) -> ChatTemplate:
    """The Q&A template a task without a template of its own is scored under, as a :class:`ChatTemplate`.

    Rendered on a row (:func:`.template.row_values`) with a prompt, it gives
    exactly the messages :func:`scorer_user_message` makes with that prompt as
    the system message: what ``tprompt export`` writes for bundled tasks.
    """
    parts = [template.question]  # "{question}" stays a placeholder
    if task.kind == "choice":
        parts.append(template.options)  # "{options}" likewise
        parts.append((template.format_logprob if logprob else template.format_choice).replace(
            "{letters}", "\x00"))  # "{letters}" too, once the rest is escaped
    elif task.kind == "number":
        parts.append(_literal(template.format_number))
    elif task.kind != "text" and task.answer_space:
        space = " / ".join(task.answer_space)
        parts.append(_literal(template.format_space.format(space=space) if not logprob else f"Reply with one of {space}."))
    elif task.kind != "text":
        parts.append(_literal(template.format_free))
    user = "\n\n".join(parts).replace("\x00", "{letters}")
    return ChatTemplate(name=template.name, messages=(
        TemplateMessage(role="system", content="", optimize=True), TemplateMessage(role="user", content=user)))


def _literal(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def options_block(choices: tuple[str, ...]) -> str:
    """``A) first\\nB) second ...``."""
    return "\n".join(f"{LETTERS[i]}) {c}" for i, c in enumerate(choices))


def scorer_user_message(example: Example, task: Task, *, logprob: bool = False,
                        template: ScorerTemplate = SCORER_TEMPLATE) -> str:
    """The question, its options and the demanded answer format, as one user message."""
    parts = [template.question.format(question=example.question)]
    if example.choices:
        parts.append(template.options.format(options=options_block(example.choices)))
        letters = ", ".join(LETTERS[: len(example.choices)])
        fmt = template.format_logprob if logprob else template.format_choice
        parts.append(fmt.format(letters=letters))
    elif task.kind == "text":
        pass  # open-ended: the whole reply is the answer, no format demanded
    elif task.kind == "number":
        parts.append(template.format_number)
    elif task.answer_space:
        space = " / ".join(task.answer_space)
        parts.append(template.format_space.format(space=space) if not logprob else f"Reply with one of {space}.")
    else:
        parts.append(template.format_free)
    return "\n\n".join(parts)
