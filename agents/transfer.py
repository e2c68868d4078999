"""The transfer agent: which source prompts seed the target stage."""

from __future__ import annotations

from ..stores.events import PromptCandidate
from ..stores.projection import RunState


def select_transfer(state: RunState, top_k: int) -> list[PromptCandidate]:
    """The prompts stage 2 starts from.

    A fork made ``--from-prompt`` carries exactly that prompt; otherwise the
    source stage's top-k (as recorded in ``stage.completed``, best first), or,
    for a run without transfer (the target-only baseline), the original prompt.
    """
    if state.from_prompt_id:
        text = state.prompts[state.from_prompt_id]
        return [PromptCandidate(prompt_id=state.from_prompt_id, text=text, origin="forked")]
    ids = list(state.top_k.get("source", ()))[:top_k]
    if not ids:
        best = state.best("source")
        ids = [best.prompt_id] if best else []
    return [PromptCandidate(prompt_id=i, text=state.prompts[i], origin="transferred") for i in ids]


__all__ = ("select_transfer",)
