"""The nodes of the Transfer-Prompting graph: the agents and the stage bookkeeping.

Every node reads the run's projection from the graph state (``state["run"]``)
and its resources from LangGraph's runtime context (:class:`RunContext`),
appends its outcome to the event log in one transaction, and returns the
state update: the new projection and the events it appended. Progress inside
a node goes out through the runtime's stream writer (``stream_mode="custom"``).

Agents (paper, section 3):

* ``propose``: the reference LLM writes new candidate prompts from the
  history of (prompt, score) pairs (``step.proposed``).
* ``score``: the scorer LLM answers the training questions under each
  candidate still to score (one ``candidate.answered`` per candidate and task).
* ``judge`` (when a judge is configured): the LLM judge scores every recorded
  answer on the rubric's criteria (``candidate.judged``, ``test.judged``).
* ``evaluate``: the objective evaluator turns recorded answers into the
  metrics and the objective (``candidate.scored``, or ``prompt.tested``).
* ``transfer``: the top-k source prompts seed the target stage
  (``transfer.selected``).

Bookkeeping: ``start_source`` / ``start_target`` open a stage with the
original prompt as step 0, ``close_step`` closes a step (best so far, stop
rule) and, when due, the stage (top-k), ``test`` has the scorer answer the
held-out test questions under one prompt, ``review`` stops the run for a
person to review a step's candidates, ``finish`` completes the run.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from langgraph.runtime import Runtime

from ..agents.prompts import TEMPLATE_SECTION
from ..agents.proposer import (
    build_meta_prompt,
    exemplar,
    meta_messages,
    proposer_templates,
    select_candidates,
    template_section,
)
from ..agents.reflective import REFLECTIVE_TEMPLATES, build_reflection
from ..agents.transfer import select_transfer
from ..errors import JudgeUnparseable, ProgramFailed
from ..evaluator import ScoredAnswer, ScoreMode, Task, answer_prompt
from ..evaluator.program import PROGRAM_AGENT, answer_program
from ..evaluator.registry import MetricSet
from ..judge.answers import judge_answered
from ..judge.request import judgement_metrics
from ..models import ChatRequest, Recorder
from ..models.recorder import CallSite
from ..stores.events import (
    Answer,
    Answered,
    CandidateAnswered,
    CandidateScored,
    Event,
    Judged,
    PromptTested,
    RunCompleted,
    RunPaused,
    Stage,
    StageStarted,
    StepProposed,
    StoredEvent,
    TestAnswered,
    TransferSelected,
    program_candidate,
)
from ..stores.projection import RunState
from . import rules
from .context import RunContext
from .parents import choose_parent, parent_traces, reflection_batch
from .rules import ScoreJob, closing_events, step_label
from .state import GraphState, Node, Update, emit


def _stage(run: RunState) -> Stage:
    """The stage ``run`` is in (a node that works on a step runs only inside a stage)."""
    assert run.stage is not None, "a step's node runs only once a stage has started"
    return run.stage


def _progress(runtime: Runtime[RunContext], label: str) -> Callable[[int, int], None]:
    writer = runtime.stream_writer
    return runtime.context.reporter(label, lambda label, done, total: writer(
        {"label": label, "done": done, "total": total}))


# -- stages ----------------------------------------------------------------------------------


def _open_stage(state: GraphState, runtime: Runtime[RunContext], stage: Stage) -> Update:
    ctx, run = runtime.context, state["run"]
    return emit(
        state, runtime,
        StageStarted(stage=stage, tasks=rules.stage_tasks(run, ctx.config, stage)),
        StepProposed(stage=stage, step=0, candidates=[rules.original(run, ctx.config)]),
    )


def start_source(state: GraphState, runtime: Runtime[RunContext]) -> Update:
    """Open the source stage; step 0 scores the original prompt on the source tasks."""
    return _open_stage(state, runtime, "source")


def start_target(state: GraphState, runtime: Runtime[RunContext]) -> Update:
    """Open the target stage without transfer (the OPRO baseline): step 0 is the original prompt."""
    return _open_stage(state, runtime, "target")


def transfer(state: GraphState, runtime: Runtime[RunContext]) -> Update:
    """The transfer agent: the source stage's top-k prompts seed the target stage as its step 0."""
    ctx, run = runtime.context, state["run"]
    target = rules.stage_tasks(run, ctx.config, "target")[0]
    seeds = select_transfer(run, ctx.config.top_k)
    if ctx.program is not None:  # a program's seeds carry their prompt sets
        seeds = [program_candidate(ctx.program.prompt_set(s.text), origin=s.origin) for s in seeds]
    return emit(
        state, runtime,
        StageStarted(stage="target", tasks=[target]),
        TransferSelected(target_task=target, prompts=seeds),
        StepProposed(stage="target", step=0, candidates=seeds),
    )


# -- the optimization step ---------------------------------------------------------------------


def propose(state: GraphState, runtime: Runtime[RunContext]) -> Update:
    """The reference LLM proposes the next step's candidates from the (prompt, score) history.

    With the user's template, the proposer sees it (its placeholders, the
    message it writes marked) and a proposal that breaks an optimizable
    message's placeholders is recorded as rejected. A template with several
    optimizable messages has reply ``i`` rewrite message ``i mod k`` of the
    best candidate so far (each proposal changes one message).
    """
    ctx, run = runtime.context, state["run"]
    config = ctx.config
    stage = _stage(run)
    step = run.step + 1
    tasks = rules.stage_tasks(run, config, stage)
    task = ctx.task(tasks[0])
    template = ctx.template_for(task)
    exemplars = [exemplar(e) for e in ctx.examples(tasks[0], "train", max(config.exemplars, 1))[: config.exemplars]]
    description = task.description
    if len(tasks) > 1:
        description += "\n(The instruction is also used for: " + ", ".join(tasks[1:]) + ".)"
    if ctx.program is not None:
        from .program_steps import propose_program, propose_program_reflective

        if config.proposer_style == "reflective":
            return propose_program_reflective(state, runtime, stage, step, description)
        return propose_program(state, runtime, stage, step, description, exemplars)
    if config.proposer_style == "reflective":
        return _propose_reflective(state, runtime, stage, step, description, template)
    history = [(h.text, h.objective) for h in run.history(stage)]
    slots = len(template.optimizable) if template is not None else 1
    best = run.best(stage)
    base: tuple[str, ...] = ()
    if template is not None and slots > 1:
        base = template.contents(best.text if best is not None else rules.original(run, config).text)
    metas = {}
    for slot in range(min(slots, config.candidates)):
        metas[slot] = build_meta_prompt(
            task_description=description,
            exemplars=exemplars,
            history=[(template.contents(t)[slot], o) for t, o in history] if slots > 1 else history,  # type: ignore[union-attr]
            transferred=[c.text for c in run.transferred] if stage == "target" else [],
            source_tasks=run.source_tasks,
            history_size=config.history_size,
            template=template_section(template, slot) if template is not None else "",
        )
    requests = [
        ChatRequest(
            messages=meta_messages(metas[i % slots]),
            temperature=config.proposer_temperature,
            max_tokens=config.proposer_max_tokens,
            seed=config.seed,
            sample_index=i,
            templates=proposer_templates(template),
        )
        for i in range(config.candidates)
    ]
    runtime.stream_writer({"label": f"{stage} step {step}: proposing", "done": 0, "total": len(requests)})
    results = ctx.call_site(run, "proposer", step=step_label(stage, step)).chat(ctx.proposer, requests)
    return _emit_proposals(state, runtime, stage, step, [r.text for r in results], [r.call_id for r in results],
                           template, base)


def _emit_proposals(state: GraphState, runtime: Runtime[RunContext], stage: Stage, step: int, replies: list[str],
                    call_ids: list[str], template: Any, base: Sequence[str], **recorded: Any) -> Update:
    """The step's candidates from the proposer's replies (checked, de-duplicated), appended as ``step.proposed``.

    With a template of several optimizable messages, reply ``i`` replaces
    message ``i mod k`` of ``base`` (the contents it rewrites); ``recorded``
    are further ``step.proposed`` fields (the reflective style's parent and examples shown).
    """
    run, config = state["run"], runtime.context.config
    slots = len(template.optimizable) if template is not None else 1

    def compose(i: int, instruction: str) -> str:
        contents = list(base)
        contents[i % slots] = instruction
        return str(template.candidate_text(contents))

    kept, rejected = select_candidates(
        replies, known_texts=list(run.prompts.values()), max_chars=config.max_prompt_chars,
        compose=compose if slots > 1 else None,
        check=template.placeholder_problem if template is not None else None,
    )
    return emit(state, runtime, StepProposed(stage=stage, step=step, candidates=kept, rejected=rejected,
                                             call_ids=call_ids, **recorded))


def _propose_reflective(state: GraphState, runtime: Runtime[RunContext], stage: Stage, step: int,
                        description: str, template: Any) -> Update:
    """The reflective style: a parent (best or from the Pareto pool) and a minibatch of its answers with feedback.

    The parent and the examples shown are recorded in ``step.proposed``; both
    are functions of the events before it and the seed, so a run killed here
    proposes the same step again, from the cache. With the user's template,
    reply ``i`` rewrites optimizable message ``i mod k`` of the parent (the
    template shown, its placeholders checked), as in the paper style.
    """
    ctx, run = runtime.context, state["run"]
    config = ctx.config
    events = list(ctx.log.events(ctx.run_id))
    parent_id = choose_parent(events, run, config, stage, step)
    parent = run.prompts.get(parent_id or "", "") or rules.original(run, config).text
    traces = parent_traces(events, config, stage, parent_id or "",
                           lambda task: ctx.examples(task, "train", config.examples))
    shown = reflection_batch(traces, config, stage, step)
    slots = len(template.optimizable) if template is not None else 1
    contents: tuple[str, ...] = template.contents(parent) if template is not None else (parent,)
    texts = [
        build_reflection(task_description=description, parent=contents[slot], traces=shown,
                         template=template_section(template, slot) if template is not None else "")
        for slot in range(min(slots, config.candidates))
    ]
    requests = [
        ChatRequest(
            messages=meta_messages(texts[i % slots]), temperature=config.proposer_temperature,
            max_tokens=config.proposer_max_tokens, seed=config.seed, sample_index=i,
            templates=REFLECTIVE_TEMPLATES + ((TEMPLATE_SECTION.ref,) if template is not None else ()),
        )
        for i in range(config.candidates)
    ]
    runtime.stream_writer({"label": f"{stage} step {step}: reflecting on {parent_id}", "done": 0,
                           "total": len(requests)})
    results = ctx.call_site(run, "proposer", step=step_label(stage, step)).chat(ctx.proposer, requests)
    return _emit_proposals(state, runtime, stage, step, [r.text for r in results], [r.call_id for r in results],
                           template, contents, parent_id=parent_id, shown=[(t.task, t.example_id) for t in shown])


def review(state: GraphState, runtime: Runtime[RunContext]) -> Update:
    """Stop the run so a person can accept, edit or drop the step's candidates (``tprompt review``)."""
    return emit(state, runtime, RunPaused(reason="review"))


def score(state: GraphState, runtime: Runtime[RunContext]) -> Update:
    """The scorer LLM answers the training questions under every candidate still to score in this rung.

    Each candidate's answers are appended as soon as they are complete, so a
    pause or a crash loses at most the candidates in flight. A served scorer
    answers up to ``concurrency`` candidates at once; their events are
    appended in candidate order, so the log is the same as a serial run's.
    """
    ctx, run = runtime.context, state["run"]
    # Under --max-rollouts, the jobs that fit are scored, then the run pauses: no answer is paid for and dropped.
    todo = rules.score_jobs(run, ctx.config)
    jobs, over = rules.rollouts_fit(run, todo, ctx.max_rollouts, ctx.train_rows({j.task for j in todo}))
    stage = _stage(run)
    step = run.in_flight or 0
    appended: list[StoredEvent] = []
    # (A program's job answers its rows `concurrency` at once itself: its jobs go one at a time.)
    width = ctx.served_width if ctx.scorer_is_remote and ctx.program is None else 1
    for start in range(0, len(jobs), width):
        chunk = jobs[start : start + width]
        site = ctx.call_site(run, "scorer")  # job i's event will be appended at site.seq + i: its calls are filed there
        if len(chunk) == 1:
            stored, run = ctx.emit(run, _program_checked(ctx, run, _answer_job(runtime, stage, step, chunk[0], site)))
            appended += stored
            continue
        recorders = [Recorder(ctx.log, run_id=ctx.run_id, prices=ctx.config.prices) for _ in chunk]  # one per thread
        try:
            with ThreadPoolExecutor(max_workers=len(chunk)) as pool:
                futures = [
                    # Each thread runs in a copy of this context: the stream writer lives there.
                    pool.submit(contextvars.copy_context().run, _answer_job, runtime, stage, step, job,
                                site.moved(seq=site.seq + i, recorder=rec))  # type: ignore[operator]
                    for i, (job, rec) in enumerate(zip(chunk, recorders))
                ]
                for fut in futures:  # in candidate order, whatever order they finish in
                    stored, run = ctx.emit(run, _program_checked(ctx, run, fut.result()))
                    appended += stored
        finally:
            for rec in recorders:
                rec.close()
    if over:
        ctx.pause_for_rollouts()  # after the work: a raised pause flag abandons scoring in flight
    return {"run": run, "events": appended}


def _answer_job(runtime: Runtime[RunContext], stage: Stage, step: int, job: ScoreJob, site: CallSite) -> CandidateAnswered:
    ctx = runtime.context
    available = ctx.examples(job.task, "train", ctx.config.examples)
    examples = available[: job.n_examples]
    # The calls made: a task with fewer training rows than the rung asks for answers only the rows it has.
    new_calls = len(examples) - min(job.n_examples - job.new_calls, len(available))
    label = f"{stage} step {step}: {job.candidate.prompt_id} on {job.task}"
    if job.rung:
        label += f" (rung {job.rung})"
    mode, answers = _answer(runtime, job.candidate.text, job.task, examples, label, site)
    return CandidateAnswered(
        stage=stage, step=step, prompt_id=job.candidate.prompt_id, text=job.candidate.text, task=job.task,
        rung=job.rung, mode=mode, scorer_calls=new_calls, answers=answers,
    )


def _program_checked(ctx: RunContext, run: RunState, answered: CandidateAnswered) -> CandidateAnswered:
    """``answered``, unless it is the run's first answer set and the program failed on every example of it.

    Raises:
        ProgramFailed: the program failed on every example of the run's first answer set (not recorded:
            a resumed run answers it again, its model calls from the cache).
    """
    first = not run.scores and not run.unevaluated
    if ctx.program is None or not first or not answered.answers or any(a.error is None for a in answered.answers):
        return answered
    raise ProgramFailed(
        f"program {ctx.program.ref} failed on every one of the run's first {len(answered.answers)} examples "
        f"(first: {answered.answers[0].error})",
        hint=f"fix the cause and resume: tprompt resume {ctx.run_id}; a changed program module needs a new run",
    )


#: Questions a local scorer answers per model call: the transformers backend
#: decodes them together, and a step's matmuls cost about the same for 4 rows
#: as for 32 (measured, 2 threads: 77 ms and 113 ms; the weights are read once
#: per step either way).
LOCAL_SCORER_BATCH = 32


def _answer(
    runtime: Runtime[RunContext], prompt: str, task_name: str, examples: Sequence[Any], label: str, site: CallSite
) -> tuple[ScoreMode, list[Answer]]:
    ctx = runtime.context
    task = ctx.task(task_name)
    mode = ctx.mode_for(task)
    if ctx.program is not None:  # the user's program answers each row; its calls are filed under agent `program`
        answers = answer_program(ctx.program, prompt, examples, task=task, model=ctx.scorer,
                                 site=replace(site, agent=PROGRAM_AGENT), progress=_progress(runtime, label),
                                 width=ctx.served_width, timeout=ctx.config.program_timeout,
                                 abandoned=ctx.pause.is_set)
    else:
        answers = answer_prompt(
            prompt, examples, task=task, model=ctx.scorer, recorder=site, mode=mode,
            template=ctx.template_for(task),
            progress=_progress(runtime, label),
            # A served scorer takes `concurrency` requests at once per endpoint; a batch must hold them all.
            batch_size=max(8, ctx.served_width) if ctx.scorer_is_remote else LOCAL_SCORER_BATCH,
        )
    return mode, stored_answers(answers, program=ctx.program is not None)


def stored_answers(answers: Sequence[ScoredAnswer], *, program: bool = False) -> list[Answer]:
    """The scorer's (or a program's) answers as an answer set records them: a program's output is kept."""
    return [
        Answer(example_id=a.example_id, parsed=a.parsed, confidence=a.confidence, followed_format=a.followed_format,
               correct=a.correct, call_id=a.call_id, output=a.raw if program and a.error is None else None,
               error=a.error, prompts=list(a.prompts) if a.prompts is not None else None)
        for a in answers
    ]


def judge(state: GraphState, runtime: Runtime[RunContext]) -> Update:
    """The LLM judge scores every recorded, not yet judged answer set on the rubric's criteria.

    One ``candidate.judged`` per ``candidate.answered`` (``test.judged`` per
    ``test.answered``), appended as soon as it
    is complete (a pause or a crash loses at most the set in flight).
    """
    ctx, run = runtime.context, state["run"]
    rubric, model = ctx.config.judge_rubric, ctx.judge
    assert rubric is not None and model is not None, "the judge node runs only when a judge is configured"
    appended: list[StoredEvent] = []
    for answered in run.unjudged():
        n = rules.judge_examples(answered, ctx.config)
        try:
            event = judge_answered(
                ctx.log, answered, rubric=rubric, model=model,
                site=ctx.call_site(run, "judge", step=rules.judge_step(answered)),
                task=ctx.task(answered.task), examples=ctx.examples(answered.task, answered.split, n),
                seed=ctx.config.seed, progress=_progress(runtime, f"judging {answered.prompt_id} on {answered.task}"),
                probe=run.judgements == 0,  # the run's first judging: stop if the judge's replies cannot be read
            )
        except JudgeUnparseable as exc:
            # The run's events up to here are sound: a fork at its last one continues with another judge.
            exc.hint = f"continue with another judge: tprompt fork {ctx.run_id} --at {run.last_seq} --judge SPEC"
            raise

        stored, run = ctx.emit(run, event)
        appended += stored
    return {"run": run, "events": appended}


def evaluate(state: GraphState, runtime: Runtime[RunContext]) -> Update:
    """The objective evaluator: metrics and objective of every recorded, not yet evaluated answer set.

    With a judge, each set's ``candidate.judged`` adds the ``judge_<criterion>`` metrics.
    """
    ctx, run = runtime.context, state["run"]
    rubric = ctx.config.judge_rubric
    return emit(state, runtime, *(
        evaluate_answers(a, ctx.objective, metrics=ctx.metric_set, task=ctx.task(a.task),
                         extra=judge_extra(run.judgement_of(a), rubric)) for a in run.unevaluated
    ))


def judge_extra(judged: Judged | None, rubric: Any) -> dict[str, float | None] | None:
    """The judge's metrics of one answer set, for :func:`evaluate_answers` (None without a judgement)."""
    if judged is None or rubric is None:
        return None
    return judgement_metrics(judged, rubric)


def evaluate_answers(
    answered: Answered,
    objective: Callable[[dict[str, float | None]], float],
    *,
    metrics: MetricSet | None = None,
    task: Task | None = None,
    extra: Mapping[str, float | None] | None = None,
) -> Event:
    """What the evaluator makes of one answer set: a score (``candidate.answered``) or a test result (``test.answered``).

    Pure: the metrics come from the event, the run's metric plug-ins
    (``metrics``, over the rows of ``task``: their references) and ``extra``
    (set-level metrics computed elsewhere from the same answers, e.g. a judge's
    ``judge_<criterion>``), so a past run can be re-evaluated under other
    weights or metrics without a model call (``tprompt rescore``). Without
    ``metrics`` and ``task``: the seven.
    """
    answers = answered.answers
    done = (metrics or MetricSet()).compute_all(answers, task)
    values, undefined = done.values, done.undefined
    values.update(extra or {})
    per_example = {"example_values": done.example_values, "feedback": done.feedback}
    if isinstance(answered, TestAnswered):
        return PromptTested(
            role=answered.role, prompt_id=answered.prompt_id, text=answered.text, task=answered.task,
            n_examples=len(answers), metrics=values, objective=objective(values), scorer_calls=answered.scorer_calls,
            undefined=undefined, **per_example,
        )
    return CandidateScored(
        stage=answered.stage, step=answered.step,
        prompt_id=answered.prompt_id, text=answered.text, task=answered.task,
        n_examples=len(answers), metrics=values, objective=objective(values), scorer_calls=answered.scorer_calls,
        rung=answered.rung, undefined=undefined, **per_example,
    )


def close_step(state: GraphState, runtime: Runtime[RunContext]) -> Update:
    """Close the step in flight (best so far, stop rule) and, when due, the stage (its top-k)."""
    ctx, run = runtime.context, state["run"]
    stage = _stage(run)
    return emit(state, runtime, *closing_events(run, ctx.config, stage))


# -- the end -------------------------------------------------------------------------------------


def test(state: GraphState, runtime: Runtime[RunContext]) -> Update:
    """The scorer answers the target task's held-out test questions under the next untested prompt."""
    ctx, run = runtime.context, state["run"]
    target = rules.stage_tasks(run, ctx.config, "target")[0]
    examples = ctx.examples(target, "test", ctx.config.test_examples)
    role = rules.untested_role(run, ctx.config)
    assert role is not None, "the router sends a run to test only while a role is untested"
    prompt = rules.prompt_for_role(run, ctx.config, role)
    mode, answers = _answer(runtime, prompt.text, target, examples, f"test: {role}", ctx.call_site(run, "scorer", step="test"))
    return emit(
        state, runtime,
        TestAnswered(role=role, prompt_id=prompt.prompt_id, text=prompt.text, task=target,
                     mode=mode, scorer_calls=rules.calls_of_test(run, prompt.prompt_id, target, len(answers)),
                     answers=answers),
    )


def finish(state: GraphState, runtime: Runtime[RunContext]) -> Update:
    return emit(state, runtime, RunCompleted())


#: The node set both graphs are built from (name -> function).
NODES: dict[str, Node] = {
    "start_source": start_source,
    "transfer": transfer,
    "start_target": start_target,
    "propose": propose,
    "review": review,
    "score": score,
    "judge": judge,
    "evaluate": evaluate,
    "close_step": close_step,
    "test": test,
    "finish": finish,
}

__all__ = ("NODES", "GraphState", "Node", "Update", "closing_events", "emit", "evaluate_answers", "judge_extra")
