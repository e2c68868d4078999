"""The proposer agent (the paper's reference LLM): new candidate prompts from history.

It renders the reference prompt (task description, a few exemplars, earlier
(prompt, score) pairs sorted ascending and capped, and in stage 2 the
transferred source prompts), samples ``n`` replies at the proposer's
temperature (sample index 0..n-1, so a re-run gets the same n back from the
cache), and keeps the instructions that are new, non-empty and short enough.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

from ..errors import UsageError
from ..evaluator.prompts import options_block
from ..evaluator.task_model import Example
from ..evaluator.template import ChatTemplate, placeholders_of
from ..stores.events import PromptCandidate, RejectedCandidate, prompt_id_of
from .prompts import (
    EXEMPLAR_ITEM,
    HISTORY_ITEM,
    META_PROMPT,
    PROGRAM_SECTION,
    PROPOSER_SYSTEM,
    PROPOSER_TEMPLATES,
    TEMPLATE_SECTION,
    TRANSFERRED_SECTION,
)

_INS = re.compile(r"<INS>(.*?)(?:</INS>|$)", re.S | re.I)


def format_exemplar(question: str, choices: Sequence[str] | None, answer: str, answer_text: str | None) -> str:
    q = question.strip()
    if choices:
        q += "\n" + options_block(tuple(choices))
        a = f"{answer}) {answer_text}" if answer_text else answer
    else:
        a = answer
    return EXEMPLAR_ITEM.render(question=q, answer=a)


def exemplar(example: Example) -> str:
    """One row as the proposer sees it: its input, and its gold answer or (open-ended) its first reference."""
    answer = example.answer or (example.references[0] if example.references else "")
    return format_exemplar(example.question, example.choices, answer, example.answer_text)


def template_section(template: ChatTemplate, slot: int) -> str:
    """The user's template as the proposer sees it: every message, the one it writes (``slot``) marked.

    ``slot`` indexes the template's optimizable messages. When that message has
    placeholders, the section says they must be kept.
    """
    index = template.optimizable[slot]
    lines = [f"[{m.role}] " + ("<INSTRUCTION>" if i == index else m.content) for i, m in enumerate(template.messages)]
    return TEMPLATE_SECTION.render(messages="\n".join(lines), keep=_keep(template.messages[index].placeholders))


def _keep(kept: Sequence[str] | None) -> str:
    """The line asking the proposer to keep the placeholders of the text it rewrites ("" when it has none)."""
    return ("The instruction must contain each of these placeholders exactly once, as written: "
            + ", ".join("{" + f + "}" for f in kept) + ".\n") if kept else ""


def program_section(prompts: Mapping[str, str], name: str) -> str:
    """A program's prompts as the proposer sees them: each by name, the one it writes (``name``) marked.

    When that prompt has ``{field}`` placeholders (the program fills them), the section says they must be kept.
    """
    lines = [f"[{n}] " + ("<INSTRUCTION>" if n == name else text) for n, text in prompts.items()]
    return PROGRAM_SECTION.render(name=name, prompts="\n".join(lines), keep=_keep(program_placeholders(prompts[name])))


def program_placeholders(text: str) -> tuple[str, ...] | None:
    """The ``{field}`` placeholders of a program's prompt; None when it is no format string (literal braces in
    it): the program sends such a prompt as it is, and nothing about placeholders is asked or checked."""
    try:
        return placeholders_of(text)
    except UsageError:
        return None


def proposer_templates(template: ChatTemplate | None) -> tuple[str, ...]:
    """The declared templates a proposer request is rendered from (the template section only when shown)."""
    return PROPOSER_TEMPLATES + ((TEMPLATE_SECTION.ref,) if template is not None else ())


def build_meta_prompt(
    *,
    task_description: str,
    exemplars: Sequence[str],
    history: Sequence[tuple[str, float]],
    transferred: Sequence[str] = (),
    source_tasks: Sequence[str] = (),
    history_size: int = 20,
    template: str = "",
) -> str:
    """The reference prompt. ``history`` is (text, objective in 0..1), any order.

    ``template`` is the user's template section (:func:`template_section`), shown before the transferred prompts.
    """
    ranked = sorted(history, key=lambda h: h[1])[-history_size:]
    hist = "\n\n".join(HISTORY_ITEM.render(text=t, score=str(round(s * 100))) for t, s in ranked) or "(none yet)"
    section = ""
    if transferred:
        section = TRANSFERRED_SECTION.render(
            source_tasks=", ".join(source_tasks) or "source tasks",
            prompts="\n".join(f"- {t}" for t in transferred),
        )
    return META_PROMPT.render(
        task_description=task_description.strip(),
        exemplars="\n\n".join(exemplars) or "(none)",
        transferred=template + section,
        history=hist,
    )


def parse_instruction(reply: str) -> str:
    """The instruction in a proposer reply: between <INS> tags, else the reply itself."""
    match = _INS.search(reply)
    text = match.group(1) if match else reply
    text = re.sub(r"</?INS>", "", text, flags=re.I)
    text = text.strip().strip('"').strip()
    return re.sub(r"[ \t]+", " ", text)


def meta_messages(meta_prompt: str) -> tuple[tuple[str, str], ...]:
    return (("system", PROPOSER_SYSTEM.render()), ("user", meta_prompt))


def select_candidates(
    replies: Sequence[str], *, known_texts: Sequence[str], max_chars: int,
    compose: Callable[[int, str], str] | None = None, check: Callable[[str], str | None] | None = None,
) -> tuple[list[PromptCandidate], list[RejectedCandidate]]:
    """De-duplicate (against history and each other) and reject empty, over-long or template-breaking ones.

    ``compose(i, instruction)`` makes reply ``i``'s instruction a whole
    candidate (a template with several optimizable messages: the others kept);
    ``check(text)`` says why a candidate breaks the template (a placeholder
    dropped or invented), recorded as the rejection's reason: it is never scored.
    """
    seen = {_norm(t) for t in known_texts}
    kept: list[PromptCandidate] = []
    rejected: list[RejectedCandidate] = []
    for i, reply in enumerate(replies):
        instruction = parse_instruction(reply)
        text = compose(i, instruction) if compose is not None and instruction else instruction
        problem = check(text) if check is not None and instruction else None
        if not instruction:
            rejected.append(RejectedCandidate(text=reply[:200], reason="empty"))
        elif len(instruction) > max_chars:
            rejected.append(RejectedCandidate(text=instruction[:200], reason=f"longer than {max_chars} characters"))
        elif problem is not None:
            rejected.append(RejectedCandidate(text=instruction[:200], reason=problem))
        elif _norm(text) in seen:
            rejected.append(RejectedCandidate(text=text[:200], reason="duplicate"))
        else:
            seen.add(_norm(text))
            kept.append(PromptCandidate(prompt_id=prompt_id_of(text), text=text, origin="proposed"))
    return kept, rejected


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


__all__ = (
    "build_meta_prompt",
    "exemplar",
    "format_exemplar",
    "proposer_templates",
    "template_section",
    "meta_messages",
    "program_placeholders",
    "program_section",
    "parse_instruction",
    "select_candidates",
)
