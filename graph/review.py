"""A person in the loop: the candidates of a step a run paused on (``--review``), accepted, edited or dropped.

The decision is a ``step.revised`` event (``by="review"``); the run then
scores exactly the candidates kept. The CLI (``tprompt review``) and the TUI
(``v`` on a run paused for review) both go through here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from ..errors import UsageError
from ..stores import EventLog
from ..stores.events import PromptCandidate, StepRevised, prompt_id_of
from ..stores.leases import run_lease
from ..stores.projection import RunState


def waiting_candidates(state: RunState) -> list[PromptCandidate]:
    """The candidates ``state``'s run waits to have reviewed; UsageError if it waits for no review."""
    if not state.awaiting_review():
        raise UsageError(
            f"run {state.run_id} is not waiting for a review (status {state.status})",
            hint="start a run with --review; it pauses before each proposed step is scored",
        )
    return list(state.pending)


def revise(
    candidates: Sequence[PromptCandidate],
    *,
    drop: Sequence[int] = (),
    edit: Mapping[int, str] | None = None,
    add: Sequence[str] = (),
    max_chars: int | None = None,
    check: Callable[[str], str | None] | None = None,
) -> list[PromptCandidate]:
    """The candidates after a person's decisions (1-based numbers); UsageError naming the first bad one.

    ``max_chars`` is the run's ``max_prompt_chars``: an edit or an added candidate
    longer than that is refused, as the run rejects a longer proposal. ``check``
    (:func:`placeholder_check`) says why a text breaks the run's template: such an
    edit or added candidate is refused, as the run rejects such a proposal.
    """
    n = len(candidates)
    both = sorted(set(drop) & set(edit or {}))
    if both:
        raise UsageError(f"candidate {both[0]} is both dropped and edited",
                         hint="drop it or edit it, not both")
    kept = dict(enumerate(candidates, 1))
    for i, text in (edit or {}).items():
        if not 1 <= i <= n:
            raise UsageError(f"there is no candidate {i} to edit", hint=f"candidates are numbered 1 to {n}")
        if not text.strip():
            raise UsageError(f"the edit of candidate {i} is empty", hint="drop the candidate instead")
        _check_length(text, max_chars, f"the edit of candidate {i}")
        _check_template(text, check, f"the edit of candidate {i}")
        if text != kept[i].text:
            kept[i] = PromptCandidate(prompt_id=prompt_id_of(text), text=text, origin="edited")
    for i in drop:
        if not 1 <= i <= n:
            raise UsageError(f"there is no candidate {i} to drop", hint=f"candidates are numbered 1 to {n}")
        kept.pop(i, None)
    out = [kept[i] for i in sorted(kept)]
    for text in add:
        if not text.strip():
            raise UsageError("an added candidate is empty")
        _check_length(text, max_chars, "an added candidate")
        _check_template(text, check, "an added candidate")
        out.append(PromptCandidate(prompt_id=prompt_id_of(text), text=text, origin="edited"))
    unique: dict[str, PromptCandidate] = {}
    for c in out:
        unique.setdefault(c.prompt_id, c)  # the first of a repeated prompt stays, in its place
    return list(unique.values())


def _check_length(text: str, max_chars: int | None, what: str) -> None:
    if max_chars is not None and len(text) > max_chars:
        raise UsageError(f"{what} has {len(text)} characters, more than the run's max_prompt_chars ({max_chars})",
                         hint=f"shorten it to {max_chars} characters or fewer")


def _check_template(text: str, check: Callable[[str], str | None] | None, what: str) -> None:
    problem = check(text) if check is not None else None
    if problem is not None:
        raise UsageError(f"{what} does not fit the run's prompt template: {problem}",
                         hint="keep exactly the {field} placeholders of the message it rewrites; {{ or }} for a brace")


def placeholder_check(state: RunState) -> Callable[[str], str | None] | None:
    """Why a candidate text breaks the template the step ``state`` waits on is scored under (None: no template)."""
    from ..evaluator.tasks import task_template
    from .rules import stage_tasks

    if state.config is None or state.stage is None:
        return None
    for task in stage_tasks(state, state.config, state.stage):
        template = task_template(state.config.template, task)
        if template is not None:
            return template.placeholder_problem
    return None


def max_prompt_chars(state: RunState) -> int | None:
    """The longest candidate ``state``'s run accepts (its config's ``max_prompt_chars``)."""
    return state.config.max_prompt_chars if state.config is not None else None


def record_review(log: EventLog, run_id: str, candidates: Sequence[PromptCandidate]) -> RunState:
    """Append the review of the step ``run_id`` waits on (under its lease); the run's new state."""
    with run_lease(log, run_id):
        state = log.state(run_id)
        waiting_candidates(state)
        assert state.stage is not None and state.in_flight is not None  # a run awaiting review has a step in flight
        log.append(run_id, [StepRevised(stage=state.stage, step=state.in_flight, by="review",
                                        candidates=list(candidates))], expected_seq=state.last_seq + 1, base=state)
        return log.state(run_id)


__all__ = ("max_prompt_chars", "placeholder_check", "record_review", "revise", "waiting_candidates")
