"""The proposer agent (the paper's reference LLM): new candidate prompts from history.

It renders the reference prompt (task description, a few exemplars, earlier
(prompt, score) pairs sorted ascending and capped, and in stage 2 the
transferred source prompts), samples ``n`` replies at the proposer's
temperature (sample index 0..n-1, so a re-run gets the same n back from the
cache), and keeps the instructions that are new, non-empty and short enough.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..stores.events import PromptCandidate, RejectedCandidate, prompt_id_of
from .prompts import EXEMPLAR_ITEM, HISTORY_ITEM, META_PROMPT, PROPOSER_SYSTEM, TRANSFERRED_SECTION

_INS = re.compile(r"<INS>(.*?)(?:</INS>|$)", re.S | re.I)


def format_exemplar(question: str, choices: Sequence[str] | None, answer: str, answer_text: str | None) -> str:
    q = question.strip()
    if choices:
        q += "\n" + "\n".join(f"{chr(65 + i)}) {c}" for i, c in enumerate(choices))
        a = f"{answer}) {answer_text}" if answer_text else answer
    else:
        a = answer
    return EXEMPLAR_ITEM.render(question=q, answer=a)


def build_meta_prompt(
    *,
    task_description: str,
    exemplars: Sequence[str],
    history: Sequence[tuple[str, float]],
    transferred: Sequence[str] = (),
    source_tasks: Sequence[str] = (),
    history_size: int = 20,
) -> str:
    """The reference prompt. ``history`` is (text, objective in 0..1), any order."""
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
        transferred=section,
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
    replies: Sequence[str], *, known_texts: Sequence[str], max_chars: int
) -> tuple[list[PromptCandidate], list[RejectedCandidate]]:
    """De-duplicate (against history and each other) and reject empty or over-long ones."""
    seen = {_norm(t) for t in known_texts}
    kept: list[PromptCandidate] = []
    rejected: list[RejectedCandidate] = []
    for reply in replies:
        text = parse_instruction(reply)
        if not text:
            rejected.append(RejectedCandidate(text=reply[:200], reason="empty"))
        elif len(text) > max_chars:
            rejected.append(RejectedCandidate(text=text[:200], reason=f"longer than {max_chars} characters"))
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
    "format_exemplar",
    "meta_messages",
    "parse_instruction",
    "select_candidates",
)
