"""A program's proposal step (``--program``): every candidate rewrites one named prompt, the others kept.

Which prompt a step rewrites: with the paper style, round-robin by step
(:func:`propose_program`); with the reflective style, the prompt the parent's
failures point to (:func:`pointed_prompt`), round-robin among ties
(:func:`propose_program_reflective`). The step's candidates name it
(``changed``); a reflective step also records why (``changed_because``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from ..agents.prompts import PROGRAM_SECTION, PROPOSER_TEMPLATES
from ..agents.proposer import (
    build_meta_prompt,
    meta_messages,
    program_placeholders,
    program_section,
    select_candidates,
)
from ..agents.reflective import REFLECTIVE_TEMPLATES, build_reflection
from ..evaluator.template import placeholder_change
from ..models import ChatRequest
from ..stores.events import (
    CandidateAnswered,
    Event,
    PromptCandidate,
    RejectedCandidate,
    Stage,
    StepProposed,
    StoredEvent,
    program_candidate,
    prompt_set_text,
)
from . import rules
from .parents import choose_parent, parent_traces, reflection_batch
from .rules import step_label
from .state import emit

if TYPE_CHECKING:
    from langgraph.runtime import Runtime

    from ..evaluator.program import Program
    from ..models import ChatResult
    from ..stores.projection import RunState
    from .config import RunConfig
    from .context import RunContext
    from .state import GraphState, Update


def round_robin(names: Sequence[str], step: int) -> str:
    """The prompt step ``step`` (from 1) of a stage rewrites by default: number ``(step - 1) mod k``."""
    return names[(step - 1) % len(names)]


def pointed_prompt(names: Sequence[str], failed: Sequence[Iterable[str]], step: int) -> tuple[str, str]:
    """The prompt the failures point to, and why (one line): the one in the calls of the most failed answers.

    ``failed`` holds, for each failed answer of the parent, the names of the
    prompts its row's calls carried. The prompt carried by the most of them
    wins; a tie (a pipeline whose every row calls every prompt ties them all)
    goes to the first tied prompt in round-robin order from the step's
    (:func:`round_robin`); no failure that carried a prompt: round-robin.
    """
    carried = [set(f) for f in failed]
    counts = {n: sum(n in c for c in carried) for n in names}
    start = names.index(round_robin(names, step))
    order = [*names[start:], *names[:start]]
    top = max(counts.values(), default=0)
    tally = ", ".join(f"{n} {counts[n]}" for n in names)
    if top == 0:
        return order[0], f"round-robin: none of the parent's {len(carried)} failed answers carried a prompt ({tally})"
    tied = [n for n in order if counts[n] == top]
    if len(tied) == 1:
        return tied[0], f"in the calls of the most of the parent's {len(carried)} failed answers ({tally})"
    return tied[0], f"round-robin among the prompts tied in the calls of the parent's {len(carried)} failed answers ({tally})"


def answer_prompts(events: Iterable[StoredEvent | Event], stage: Stage, prompt_id: str) -> dict[tuple[str, str], list[str]]:
    """(task, example id) -> the prompts the calls of ``prompt_id``'s training answer carried, in ``stage``."""
    found: dict[tuple[str, str], list[str]] = {}
    for item in events:
        ev = item.event if isinstance(item, StoredEvent) else item
        if isinstance(ev, CandidateAnswered) and ev.prompt_id == prompt_id and ev.stage == stage:
            for a in ev.answers:
                found[(ev.task, a.example_id)] = list(a.prompts or ())
    return found


def _candidates(program: Program, base: Mapping[str, str], name: str, results: Sequence[ChatResult], run: RunState,
                config: RunConfig) -> tuple[list[PromptCandidate], list[RejectedCandidate]]:
    """The proposer's replies as sets ``base`` with prompt ``name`` rewritten (checked, de-duplicated)."""
    checked = program_placeholders(base[name]) is not None
    kept, rejected = select_candidates(
        [r.text for r in results], known_texts=list(run.prompts.values()), max_chars=config.max_prompt_chars,
        compose=lambda _i, instruction: prompt_set_text({**base, name: instruction}),
        check=(lambda text: placeholder_change(base[name], program.prompt_set(text)[name])) if checked else None,
    )
    return [program_candidate(program.prompt_set(c.text), changed=name) for c in kept], rejected


def _requests(text: str, config: RunConfig, templates: tuple[str, ...]) -> list[ChatRequest]:
    return [ChatRequest(messages=meta_messages(text), temperature=config.proposer_temperature,
                        max_tokens=config.proposer_max_tokens, seed=config.seed, sample_index=i, templates=templates)
            for i in range(config.candidates)]


def propose_program(state: GraphState, runtime: Runtime[RunContext], stage: Stage, step: int, description: str,
                    exemplars: list[str]) -> Update:
    """A program's step, paper style: the prompt :func:`round_robin` picks, rewritten from the stage's best set.

    The history the proposer sees is that prompt's texts with their sets' scores.
    """
    ctx, run = runtime.context, state["run"]
    config, program = ctx.config, ctx.program
    assert program is not None
    name = round_robin(program.names, step)
    best = run.best(stage)
    base = program.prompt_set(best.text if best is not None else rules.original(run, config).text)
    scores: dict[str, float] = {}
    for text, objective in ((h.text, h.objective) for h in run.history(stage)):
        mine = program.prompt_set(text)[name]
        scores[mine] = max(objective, scores.get(mine, objective))
    meta = build_meta_prompt(
        task_description=description, exemplars=exemplars, history=list(scores.items()),
        transferred=[program.prompt_set(c.text)[name] for c in run.transferred] if stage == "target" else [],
        source_tasks=run.source_tasks, history_size=config.history_size, template=program_section(base, name),
    )
    requests = _requests(meta, config, PROPOSER_TEMPLATES + (PROGRAM_SECTION.ref,))
    runtime.stream_writer({"label": f"{stage} step {step}: proposing {name}", "done": 0, "total": len(requests)})
    results = ctx.call_site(run, "proposer", step=step_label(stage, step)).chat(ctx.proposer, requests)
    candidates, rejected = _candidates(program, base, name, results, run, config)
    return emit(state, runtime, StepProposed(stage=stage, step=step, candidates=candidates, rejected=rejected,
                                             call_ids=[r.call_id for r in results]))


def propose_program_reflective(state: GraphState, runtime: Runtime[RunContext], stage: Stage, step: int,
                               description: str) -> Update:
    """A program's step, reflective style: the prompt the parent's failures point to (:func:`pointed_prompt`).

    The parent is chosen as for one prompt (best, or the Pareto pool); the
    request shows the program's prompts with that one marked, its text as the
    instruction to improve, and the parent's minibatch of answers with their
    feedback. The step records the parent, the examples shown and why the
    prompt was chosen (``changed_because``): all functions of the events before
    it, so a resumed run proposes the same step from the cache.
    """
    ctx, run = runtime.context, state["run"]
    config, program = ctx.config, ctx.program
    assert program is not None
    events = list(ctx.log.events(ctx.run_id))
    parent_id = choose_parent(events, run, config, stage, step)
    parent = program.prompt_set(run.prompts.get(parent_id or "", "") or rules.original(run, config).text)
    traces = parent_traces(events, config, stage, parent_id or "",
                           lambda task: ctx.examples(task, "train", config.examples))
    carried = answer_prompts(events, stage, parent_id or "")
    name, why = pointed_prompt(program.names, [carried.get((t.task, t.example_id), []) for t in traces if t.failed],
                               step)
    shown = reflection_batch(traces, config, stage, step)
    text = build_reflection(task_description=description, parent=parent[name], traces=shown,
                            template=program_section(parent, name))
    requests = _requests(text, config, REFLECTIVE_TEMPLATES + (PROGRAM_SECTION.ref,))
    runtime.stream_writer({"label": f"{stage} step {step}: reflecting on {name} of {parent_id}", "done": 0,
                           "total": len(requests)})
    results = ctx.call_site(run, "proposer", step=step_label(stage, step)).chat(ctx.proposer, requests)
    candidates, rejected = _candidates(program, parent, name, results, run, config)
    return emit(state, runtime, StepProposed(
        stage=stage, step=step, candidates=candidates, rejected=rejected, call_ids=[r.call_id for r in results],
        parent_id=parent_id, shown=[(t.task, t.example_id) for t in shown], changed_because=why))


__all__ = ("answer_prompts", "pointed_prompt", "propose_program", "propose_program_reflective", "round_robin")
