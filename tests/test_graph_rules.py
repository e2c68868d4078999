"""The routing rule and the algorithm's rules as pure functions of (run state, config): no model, no store.

A run is simulated by folding the events each node would append (made up
here, deterministically) and asking :func:`next_node` where to go after each
node. The simulation checks the graph's contract: every destination is one the
branching point's edges allow, and a run re-entered from its log after any
prefix of its events (a kill -9 anywhere) goes to the node it went to.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from tprompt.agents.transfer import select_transfer
from tprompt.graph.config import RunConfig
from tprompt.graph.rules import (
    END,
    budget_left,
    budget_spent,
    closing_events,
    next_node,
    rung_sizes,
    score_jobs,
    stage_tasks,
    stage_top_k,
    untested_role,
)
from tprompt.graph.topology import BRANCHES, EDGES, START
from tprompt.stores.events import (
    Answer,
    CandidateAnswered,
    CandidateScored,
    Event,
    PromptCandidate,
    PromptTested,
    RunCompleted,
    RunCreated,
    RunFailed,
    RunPaused,
    RunResumed,
    StageStarted,
    StepProposed,
    StepRevised,
    StoredEvent,
    TestAnswered,
    TransferSelected,
    prompt_id_of,
)
from tprompt.stores.projection import RunState, fold

NOW = datetime(2026, 1, 1, tzinfo=UTC)
BASE = dict(source_tasks=["src_a"], target_task="tgt", proposer="fake", scorer="fake", steps=2, candidates=3,
            top_k=2, examples=4, test_examples=3)
FIXED = dict(EDGES)
ALLOWED = {src: set(choices) for src, (_, choices) in BRANCHES.items()}


def config(**overrides: object) -> RunConfig:
    return RunConfig(**{**BASE, **overrides})


def cand(text: str) -> PromptCandidate:
    return PromptCandidate(prompt_id=prompt_id_of(text), text=text, origin="proposed")


def append(state: RunState, *events: Event) -> RunState:
    stored = [StoredEvent(run_id="r", seq=state.last_seq + 1 + i, event_id=f"r:{state.last_seq + 1 + i}",
                          schema_version=1, created_at=NOW, event=ev) for i, ev in enumerate(events)]
    return fold(stored, state=state)


def created(cfg: RunConfig) -> RunState:
    return append(RunState(run_id="r"), RunCreated(
        config=cfg.model_dump(mode="json"), source_tasks=list(cfg.source_tasks), target_task=cfg.target_task,
        original_prompt=PromptCandidate(prompt_id=prompt_id_of(cfg.original_prompt), text=cfg.original_prompt,
                                        origin="original")))


def quality(prompt_id: str, task: str) -> int:
    """How many of 8 examples a prompt gets right (a stand-in for the scorer)."""
    return hashlib.sha256(f"{prompt_id}/{task}".encode()).digest()[0] % 9


def answers(prompt_id: str, task: str, n: int) -> list[Answer]:
    right = quality(prompt_id, task)
    return [Answer(example_id=f"e{i}", parsed="A", confidence=0.5, followed_format=True, correct=i < right * n / 8)
            for i in range(n)]


def scored(a: CandidateAnswered | TestAnswered) -> Event:
    acc = sum(x.correct for x in a.answers) / len(a.answers)
    metrics = {"accuracy": acc}
    if isinstance(a, TestAnswered):
        return PromptTested(role=a.role, prompt_id=a.prompt_id, text=a.text, task=a.task,
                            n_examples=len(a.answers), metrics=metrics, objective=acc, scorer_calls=a.scorer_calls)
    return CandidateScored(stage=a.stage, step=a.step, prompt_id=a.prompt_id, text=a.text,
                           task=a.task, n_examples=len(a.answers), metrics=metrics, objective=acc,
                           scorer_calls=a.scorer_calls, rung=a.rung)


def node_events(node: str, run: RunState, cfg: RunConfig) -> list[Event]:
    """What ``node`` would append to ``run`` (the real nodes' shapes, made-up model output)."""
    stage = run.stage
    if node in ("start_source", "start_target"):
        opened = "source" if node == "start_source" else "target"
        return [StageStarted(stage=opened, tasks=stage_tasks(run, cfg, opened)),
                StepProposed(stage=opened, step=0, candidates=[run.original_prompt])]  # type: ignore[list-item]
    if node == "transfer":
        seeds = select_transfer(run, cfg.top_k)
        return [StageStarted(stage="target", tasks=stage_tasks(run, cfg, "target")),
                TransferSelected(target_task=cfg.target_task, prompts=seeds),
                StepProposed(stage="target", step=0, candidates=seeds)]
    if node == "propose":
        step = run.step + 1
        return [StepProposed(stage=stage, step=step,  # type: ignore[arg-type]
                             candidates=[cand(f"{stage} {step} #{i}") for i in range(cfg.candidates)])]
    if node == "critic":
        return [StepRevised(stage=stage, step=run.in_flight, by="critic",  # type: ignore[arg-type]
                            candidates=[cand(c.text + " (tightened)") for c in run.pending])]
    if node == "review":
        return [RunPaused(reason="review")]
    if node == "score":
        return [CandidateAnswered(stage=stage, step=run.in_flight, prompt_id=j.candidate.prompt_id,
                                  text=j.candidate.text, task=j.task, rung=j.rung, scorer_calls=j.new_calls,
                                  answers=answers(j.candidate.prompt_id, j.task, j.n_examples))
                for j in score_jobs(run, cfg)]
    if node == "evaluate":
        return [scored(a) for a in run.unevaluated]
    if node == "close_step":
        return closing_events(run, cfg, stage)  # type: ignore[arg-type]
    if node == "test":
        role = untested_role(run, cfg)
        best = run.best("source" if role == "best_source" else "target")
        prompt = run.original_prompt if role == "original" or best is None else cand(best.text)
        return [TestAnswered(role=role, prompt_id=prompt.prompt_id, text=prompt.text,  # type: ignore[union-attr,arg-type]
                             task=cfg.target_task, scorer_calls=cfg.test_examples,
                             answers=answers(prompt.prompt_id, "test", cfg.test_examples))]  # type: ignore[union-attr]
    if node == "finish":
        return [RunCompleted()]
    raise AssertionError(node)


class Trace:
    """A simulated run: the nodes in order, the state each node was entered with, and every kill point."""

    def __init__(self) -> None:
        self.nodes: list[str] = []
        self.entries: list[tuple[RunState, str]] = []
        #: (state before an append, the node appending): where a kill -9 can land
        self.points: list[tuple[RunState, str]] = []

    def entered(self, node: str, nth: int = 1) -> RunState:
        """The state the run had when it entered ``node`` for the ``nth`` time."""
        return [run for run, at in self.entries if at == node][nth - 1]


def simulate(cfg: RunConfig, chain: Sequence[str] = ()) -> Trace:
    """Drive a run by the rule alone, from START to the end, checking each destination against the edges."""
    outgoing: dict[str, str] = dict(FIXED)
    branch_of = {src: src for src in BRANCHES}
    if chain:  # as build_graph's insert_after: propose leads to the chain, whose last node takes propose's branch
        outgoing["propose"] = chain[0]
        outgoing.update(itertools.pairwise(chain))
        branch_of[chain[-1]] = branch_of.pop("propose")
    trace, run, at = Trace(), created(cfg), START
    for _ in range(500):
        if at in branch_of:
            node = next_node(run, cfg, chain=chain)
            assert node in ALLOWED[branch_of[at]] | set(chain if at == START else ()), (at, node)
        else:
            node = outgoing[at]
        if node == END:
            if run.status == "completed":
                return trace
            assert run.status == "paused"  # the review pause: a person accepts the candidates, the run resumes
            run = append(run, StepRevised(stage=run.stage, step=run.in_flight, by="review",  # type: ignore[arg-type]
                                          candidates=list(run.pending)), RunResumed())
            at = START
            continue
        trace.nodes.append(node)
        trace.entries.append((run, node))
        events = node_events(node, run, cfg)
        # Nodes append their events in one transaction; score appends each candidate's answers on arrival.
        appends = [[ev] for ev in events] if node == "score" else [events]
        for batch in appends:
            if not batch:
                continue  # a node with nothing to do (scoring a spent budget) leaves no trace in the log
            trace.points.append((run, node))
            run = append(run, *batch)
        at = node
    raise AssertionError("the run did not finish")


# -- the whole run, by the rule -------------------------------------------------------------------


@pytest.mark.parametrize("overrides", [
    {}, {"transfer": False}, {"budget": "racing", "candidates": 4, "examples": 8},
    {"scorer_budget": 30}, {"patience": 1, "steps": 4}, {"review": True}, {"source_tasks": ["src_a", "src_b"]},
], ids=["transfer", "target-only", "racing", "scorer-budget", "patience", "review", "two-sources"])
def test_every_destination_is_an_edge_and_resuming_anywhere_enters_where_the_run_went(overrides: dict) -> None:
    cfg = config(**overrides)
    trace = simulate(cfg)
    assert trace.nodes[0] == ("start_source" if cfg.transfer else "start_target") and trace.nodes[-1] == "finish"
    assert trace.nodes.count("test") == (3 if cfg.transfer else 2)
    for run, node in trace.points:
        assert next_node(run, cfg) == node, (node, run.last_seq)


def test_a_kill_inside_scoring_resumes_with_the_jobs_left() -> None:
    cfg = config()
    trace = simulate(cfg)
    first = trace.entered("score", 2)  # step 1 of the source stage: three candidates
    inside = [run for run, node in trace.points if node == "score" and run.in_flight == 1 and run.stage == "source"]
    assert [len(score_jobs(run, cfg)) for run in inside] == [3, 2, 1]
    assert inside[0] is first and {next_node(run, cfg) for run in inside} == {"score"}
    # Every job a resumed node does is one the uninterrupted node did, in the same order.
    assert [j.candidate for j in score_jobs(inside[1], cfg)] == [j.candidate for j in score_jobs(first, cfg)][1:]


# -- each branch ---------------------------------------------------------------------------------------


def run_to(cfg: RunConfig, node: str, nth: int = 1) -> RunState:
    """The run's state just before the ``nth`` time it enters ``node``."""
    return simulate(cfg).entered(node, nth)


def test_fresh_run_opens_the_first_stage() -> None:
    assert next_node(created(config()), config()) == "start_source"
    assert next_node(created(config(transfer=False)), config(transfer=False)) == "start_target"


def test_a_closed_source_stage_goes_to_transfer_and_a_closed_target_stage_to_test() -> None:
    cfg = config()
    assert next_node(run_to(cfg, "transfer"), cfg) == "transfer"
    before_test = run_to(cfg, "test")
    assert before_test.stages_completed == ("source", "target") and next_node(before_test, cfg) == "test"


def test_after_the_tests_the_run_finishes_and_a_finished_or_failed_run_ends() -> None:
    cfg = config()
    last = run_to(cfg, "finish")
    assert untested_role(last, cfg) is None and next_node(last, cfg) == "finish"
    assert next_node(append(last, RunCompleted()), cfg) == END
    assert next_node(append(last, RunFailed(error="boom", code="X", retryable=True)), cfg) == END


def test_test_answers_are_evaluated_before_the_next_test() -> None:
    cfg = config()
    before = run_to(cfg, "test")
    answered = append(before, *node_events("test", before, cfg))
    assert answered.in_flight is None and next_node(answered, cfg) == "evaluate"
    assert next_node(append(answered, scored(answered.unevaluated[0])), cfg) == "test"


def test_a_proposed_step_is_scored_then_evaluated_then_closed() -> None:
    cfg = config()
    proposed = run_to(cfg, "propose")
    run = append(proposed, *node_events("propose", proposed, cfg))
    assert next_node(run, cfg) == "score"
    run = append(run, *node_events("score", run, cfg))
    assert next_node(run, cfg) == "evaluate"
    run = append(run, *node_events("evaluate", run, cfg))
    assert next_node(run, cfg) == "close_step"
    run = append(run, *node_events("close_step", run, cfg))
    assert next_node(run, cfg) == "propose"  # step 1 of 2: not the last


def test_a_proposal_with_nothing_new_closes_the_step() -> None:
    cfg = config()
    before = run_to(cfg, "propose")
    empty = append(before, StepProposed(stage="source", step=1, candidates=[]))
    assert next_node(empty, cfg) == "close_step"


def test_inserted_nodes_revise_a_proposed_step_first_in_order() -> None:
    cfg = config()
    trace = simulate(cfg, chain=("critic",))
    i = trace.nodes.index("propose")
    assert trace.nodes[i: i + 3] == ["propose", "critic", "score"]
    assert trace.nodes.count("critic") == cfg.steps * 2
    assert all(next_node(run, cfg, chain=("critic",)) == node for run, node in trace.points)
    proposed = run_to(cfg, "propose")
    run = append(proposed, *node_events("propose", proposed, cfg))
    assert next_node(run, cfg, chain=("critic", "judge")) == "critic"
    run = append(run, *node_events("critic", run, cfg))
    assert next_node(run, cfg, chain=("critic", "judge")) == "judge"
    assert next_node(run, cfg, chain=("critic",)) == "score"


def test_review_pauses_each_proposed_step_before_it_is_scored() -> None:
    cfg = config(review=True)
    nodes = simulate(cfg).nodes
    assert nodes.count("review") == cfg.steps * 2  # every proposed step of both stages, never a step 0
    proposed = run_to(cfg, "propose")
    run = append(proposed, *node_events("propose", proposed, cfg))
    assert next_node(run, cfg) == "review"
    run = append(run, RunPaused(reason="review"), StepRevised(stage="source", step=1, by="review",
                                                            candidates=list(run.pending)), RunResumed())
    assert next_node(run, cfg) == "score"
    step0 = run_to(cfg, "start_source")
    step0 = append(step0, *node_events("start_source", step0, cfg))
    assert next_node(step0, cfg) == "score"  # the original prompt is not reviewed


# -- racing, budget, patience, top-k ------------------------------------------------------------------------


def test_rung_sizes_halve_up_to_the_examples_and_drop_empty_rungs() -> None:
    assert rung_sizes(config(examples=8, racing_rungs=3)) == [2, 4, 8]
    assert rung_sizes(config(examples=16, racing_rungs=4)) == [2, 4, 8, 16]
    assert rung_sizes(config(examples=2, racing_rungs=4)) == [1, 2]


def test_racing_scores_a_rung_then_keeps_the_better_half() -> None:
    cfg = config(budget="racing", candidates=4, examples=8)
    proposed = run_to(cfg, "propose")
    run = append(proposed, *node_events("propose", proposed, cfg))
    rung0 = score_jobs(run, cfg)
    assert [(j.rung, j.n_examples, j.new_calls) for j in rung0] == [(0, 2, 2)] * 4
    run = append(run, *node_events("score", run, cfg))
    assert score_jobs(run, cfg) == [] and next_node(run, cfg) == "evaluate"  # the ranking needs the scores
    run = append(run, *node_events("evaluate", run, cfg))
    rung1 = score_jobs(run, cfg)
    assert [(j.rung, j.n_examples, j.new_calls) for j in rung1] == [(1, 4, 2)] * 2
    best_two = sorted(run.step_scores("source", 1), key=lambda s: -s.objective)[:2]
    assert {j.candidate.prompt_id for j in rung1} == {s.prompt_id for s in best_two}
    assert next_node(run, cfg) == "score"
    for _ in range(2):
        run = append(run, *node_events("score", run, cfg))
        run = append(run, *node_events("evaluate", run, cfg))
    assert score_jobs(run, cfg) == [] and next_node(run, cfg) == "close_step"
    step0 = run_to(cfg, "start_source")
    step0 = append(step0, *node_events("start_source", step0, cfg))
    assert [j.n_examples for j in score_jobs(step0, cfg)] == [8]  # step 0 (one prompt) is never raced


def test_the_scorer_budget_caps_jobs_and_then_closes_the_stage() -> None:
    cfg = config(scorer_budget=10, examples=4)
    start = run_to(cfg, "start_source")
    run = append(start, *node_events("start_source", start, cfg))
    assert budget_left(run, cfg) == 10 and not budget_spent(run, cfg)
    for node in ("score", "evaluate", "close_step"):
        run = append(run, *node_events(node, run, cfg))
    assert budget_left(run, cfg) == 6
    run = append(run, *node_events("propose", run, cfg))
    assert len(score_jobs(run, cfg)) == 1  # 3 candidates x 4 calls; only one fits in 6
    for node in ("score", "evaluate"):
        run = append(run, *node_events(node, run, cfg))
    assert budget_left(run, cfg) == 2 and budget_spent(run, cfg)
    assert score_jobs(run, cfg) == [] and next_node(run, cfg) == "close_step"
    closing = closing_events(run, cfg, "source")
    assert [e.type for e in closing] == ["step.completed", "stage.completed"] and closing[0].stop  # type: ignore[attr-defined]
    assert next_node(append(run, *closing), cfg) == "transfer"


def test_patience_stops_a_stage_without_improvement() -> None:
    cfg = config(patience=1, steps=5)
    run = run_to(cfg, "transfer")
    source_steps = [s.step for s in run.stage_scores("source")]
    assert run.stage_stopped and max(source_steps) < cfg.steps  # stopped before its last step
    best_by_step = {k: max(s.objective for s in run.stage_scores("source") if s.step <= k)
                    for k in range(max(source_steps) + 1)}
    last = max(source_steps)
    assert best_by_step[last] <= best_by_step[last - 1]


def test_stage_top_k_is_best_first() -> None:
    cfg = config()
    run = run_to(cfg, "transfer")
    hist = run.history("source")
    assert stage_top_k(run, "source", 2) == [hist[-1].prompt_id, hist[-2].prompt_id]
    assert run.top_k["source"] == tuple(stage_top_k(run, "source", cfg.top_k))


def test_stage_tasks_follow_the_config_and_a_moved_target() -> None:
    cfg = config(source_tasks=["a", "b"])
    run = created(cfg)
    assert stage_tasks(run, cfg, "source") == ["a", "b"] and stage_tasks(run, cfg, "target") == ["tgt"]
    assert stage_tasks(run, config(transfer=False), "source") == []
    moved = run.model_copy(update={"target_task": "elsewhere"})
    assert stage_tasks(moved, cfg, "target") == ["elsewhere"]


def test_a_stage_whose_budget_is_spent_between_steps_closes_instead_of_proposing() -> None:
    # A fork with a lower scorer budget: the parent's step closed without a stop, the fork's budget is spent.
    cfg = config()
    between = run_to(cfg, "propose", 2)
    assert not between.stage_stopped and between.in_flight is None
    tight = config(scorer_budget=between.scorer_calls["source"] + 1)
    assert next_node(between, cfg) == "propose" and next_node(between, tight) == "close_step"
    assert [e.type for e in closing_events(between, tight, "source")] == ["stage.completed"]


# -- the compiled graph holds the rule to its edges ----------------------------------------------------------


def test_the_graph_refuses_a_destination_its_edges_do_not_allow(tmp_path) -> None:
    """An inserted node that does not record its revision would send the run back to itself: refused, not looped."""
    from test_graph import SMALL

    from tprompt.graph import Runner, build_graph, create_run, make_config
    from tprompt.stores import EventLog

    def silent_critic(state, runtime):  # appends nothing: the step still looks unrevised by "critic"
        return {"run": state["run"], "events": []}

    log = EventLog(tmp_path / "g.db")
    run_id = create_run(log, make_config({**SMALL, "transfer": False, "steps": 1}))
    graph = build_graph(transfer=False, nodes={"critic": silent_critic}, insert_after={"critic": "propose"})
    from tprompt.errors import UsageError

    # Before: LangGraph's bare KeyError ("critic" is not in the after_propose path map); now one line saying what to do.
    with pytest.raises(UsageError, match="node 'critic', inserted after propose, returned without recording "
                                         "step.revised by 'critic'"):
        Runner(log, run_id, graph=graph).run()
    types = [e.type for e in log.events(run_id)]
    assert types[-2:] == ["step.proposed", "run.failed"]  # step 1 proposed, then refused: nothing of it scored
