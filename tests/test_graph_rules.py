"""The routing rule and the algorithm's rules, checked against real runs of the graph on the fake model.

Each run here is the real graph (``graph/build.py``) running the real nodes
(``graph/nodes.py``) on the fake model. The test only watches: the log records
each append (the points where a kill -9 can land), the runner's stream names
the node that made it. Against what the run wrote, the pure rules of
``graph/rules.py`` must agree with what the nodes did: after any prefix of the
run's events that a kill can leave, :func:`next_node` names the node that
appended next (so a run re-entered from its log goes where it went), every
step between two nodes is one the edges allow, and the jobs, budgets and
closings the rules compute are the ones the nodes carried out.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from test_graph import SMALL

from tprompt.errors import TPromptError, UsageError
from tprompt.graph import Runner, build_graph, create_run, fork_run, make_config
from tprompt.graph.config import RunConfig
from tprompt.graph.review import record_review, waiting_candidates
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
from tprompt.graph.runner import EventsAppended, Update
from tprompt.graph.topology import BRANCHES, START, fixed_edges
from tprompt.stores import EventLog
from tprompt.stores.events import CandidateAnswered, Event, StepRevised, StoredEvent
from tprompt.stores.projection import RunState, fold

#: What the runner streams for its own marks (not graph nodes): the ``run.resumed`` and ``run.paused`` it appends.
DRIVER = ("resume", "pause")


class TracingLog(EventLog):
    """The event log, remembering each append (one transaction: a kill -9 lands between two, never inside one)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.appends: list[tuple[str, list[int]]] = []  # (run, the seqs one append wrote)

    def append(self, run_id: str, events: Sequence[Event], **kwargs: Any) -> list[StoredEvent]:
        stored = super().append(run_id, events, **kwargs)
        if stored:
            self.appends.append((run_id, [e.seq for e in stored]))
        return stored


@dataclass(frozen=True)
class Entry:
    """A node the graph ran: the state it was entered with, and the events it appended."""

    state: RunState
    node: str
    events: list[StoredEvent]


@dataclass
class Trace:
    """A real run, watched."""

    log: TracingLog
    run_id: str
    config: RunConfig
    chain: tuple[str, ...]
    #: the graph nodes each execution ran, in order (a run paused for review executes again)
    executions: list[list[str]]
    entries: list[Entry]
    #: (the state before an append, the graph node that made it): every point a kill -9 can leave a run at
    points: list[tuple[RunState, str]]

    @property
    def nodes(self) -> list[str]:
        return [n for ex in self.executions for n in ex]

    def entry(self, node: str, nth: int = 1) -> Entry:
        """The ``nth`` time the run entered ``node``."""
        return [e for e in self.entries if e.node == node][nth - 1]

    def entered(self, node: str, nth: int = 1) -> RunState:
        """The state the run had when it entered ``node`` for the ``nth`` time."""
        return self.entry(node, nth).state

    def in_step(self, stage: str, step: int) -> list[Entry]:
        """The nodes that worked on ``stage``'s step ``step`` once it was proposed, in order."""
        return [e for e in self.entries if e.state.stage == stage and e.state.in_flight == step]


def reviser(name: str) -> Any:
    """A node inserted after ``propose`` (as docs/python.md shows): it records its revision, candidates unchanged."""

    def node(state: Any, runtime: Any) -> dict[str, Any]:
        ctx, run = runtime.context, state["run"]
        stored, new_run = ctx.emit(run, StepRevised(stage=run.stage, step=run.in_flight, by=name,
                                                    candidates=list(run.pending)))
        return {"run": new_run, "events": stored}

    return node


def drive(log: TracingLog, run_id: str, chain: Sequence[str] = (), *, pause_every_node: bool = False) -> Trace:
    """Run ``run_id`` to its end on the real graph, watching; a review pause is accepted as proposed.

    ``pause_every_node``: pause the run after each node (the driver appends ``run.paused``) and resume it in a
    new runner, so every node after the first is entered by the graph's own resume routing.
    """
    config = log.state(run_id).config
    assert config is not None
    graph = None
    if chain:
        after = dict(zip(chain, ("propose", *chain[:-1]), strict=True))
        graph = build_graph(transfer=config.transfer, judge=config.judge is not None,
                            nodes={n: reviser(n) for n in chain}, insert_after=after)
    executions: list[list[str]] = []
    entries: list[Entry] = []
    writer: dict[int, str] = {}  # seq -> the node (or the driver's mark) that appended it
    while len(executions) <= 200:
        # Each execution opens the run's resources, as a resume in a new process does (their pause flag is its own).
        runner = Runner(log, run_id, graph=graph)
        ran, last = list[str](), [runner.state]

        def watch(update: Update, ran: list[str] = ran, last: list[RunState] = last, runner: Runner = runner) -> None:
            if not isinstance(update, EventsAppended):
                return
            writer.update({e.seq: update.node for e in update.events})
            if update.node not in DRIVER:
                ran.append(update.node)
                entries.append(Entry(last[0], update.node, update.events))
                if pause_every_node:
                    runner.request_pause()
            last[0] = update.state

        state = runner.run(on_update=watch)
        executions.append(ran)
        if state.status == "completed":
            break
        assert state.status == "paused", state.status
        if state.awaiting_review():
            record_review(log, run_id, waiting_candidates(state))  # a person accepts the candidates as proposed
    else:
        raise AssertionError("the run did not finish")
    at = states(list(log.events(run_id)))
    points = [(at[seqs[0] - 1], writer[seqs[0]]) for run, seqs in log.appends
              if run == run_id and writer.get(seqs[0]) not in (None, *DRIVER)]
    return Trace(log, run_id, config, tuple(chain), executions, entries, points)


def states(events: Sequence[StoredEvent]) -> list[RunState]:
    """``states[k]``: the run's projection after its first ``k`` events (``states[0]``: before any)."""
    out = [RunState(run_id=events[0].run_id)]
    for ev in events:
        out.append(fold([ev], state=out[-1]))
    return out


_TRACES: dict[tuple[Any, ...], Trace] = {}


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``traced(chain=(), **overrides)``: the trace of a real run of the small config with ``overrides`` (one per
    module and arguments: the tests only read it)."""

    def get(chain: Sequence[str] = (), **overrides: object) -> Trace:
        key = (tuple(chain), repr(sorted(overrides.items())))
        if key not in _TRACES:
            log = TracingLog(tmp_path_factory.mktemp("run") / "t.db")
            _TRACES[key] = drive(log, create_run(log, make_config({**SMALL, **overrides})), chain)
        return _TRACES[key]

    yield get
    _TRACES.clear()


def allowed(config: RunConfig, chain: Sequence[str]) -> dict[str, set[str]]:
    """node -> the nodes the drawn edges let it lead to (with ``chain`` inserted after ``propose``, as build_graph)."""
    out = {src: set(choices) for src, (_, choices) in BRANCHES.items()}
    out.update({src: {dst} for src, dst in fixed_edges(config.judge is not None)})
    if chain:
        out[chain[-1]] = out.pop("propose")
        out["propose"] = {chain[0]}
        out.update({a: {b} for a, b in itertools.pairwise(chain)})
        out[START] |= set(chain)
    return out


# -- the whole run, by the rule -------------------------------------------------------------------


@pytest.mark.parametrize("overrides", [
    {}, {"transfer": False}, {"budget": "racing", "candidates": 4, "examples": 8},
    {"scorer_budget": 30}, {"patience": 1, "steps": 4}, {"review": True},
    {"source_tasks": ["ai2_science", "bbh/navigate"]},
], ids=["transfer", "target-only", "racing", "scorer-budget", "patience", "review", "two-sources"])
def test_every_destination_is_an_edge_and_resuming_anywhere_enters_where_the_run_went(traced, overrides) -> None:
    trace = traced(**overrides)
    cfg, edges = trace.config, allowed(trace.config, ())
    assert trace.nodes[0] == ("start_source" if cfg.transfer else "start_target") and trace.nodes[-1] == "finish"
    assert trace.nodes.count("test") == (3 if cfg.transfer else 2)
    for ran in trace.executions:
        for src, dst in itertools.pairwise([START, *ran, END]):
            assert dst in edges[src], (src, dst)
    assert len(trace.points) > len(trace.nodes) // 2
    for run, node in trace.points:
        assert next_node(run, cfg) == node, (node, run.last_seq)


def test_a_kill_inside_scoring_resumes_with_the_jobs_left(traced) -> None:
    trace = traced()
    cfg = trace.config
    first = trace.entry("score", 2)  # step 1 of the source stage: three candidates
    inside = [run for run, node in trace.points if node == "score" and run.in_flight == 1 and run.stage == "source"]
    assert [len(score_jobs(run, cfg)) for run in inside] == [3, 2, 1]
    assert inside[0] == first.state and {next_node(run, cfg) for run in inside} == {"score"}
    # The node did the rule's jobs, in its order; every job a resumed node does is one the node did, in order.
    done = [(e.event.prompt_id, e.event.task) for e in first.events if isinstance(e.event, CandidateAnswered)]
    assert done == [(j.candidate.prompt_id, j.task) for j in score_jobs(first.state, cfg)]
    assert [j.candidate for j in score_jobs(inside[1], cfg)] == [j.candidate for j in score_jobs(first.state, cfg)][1:]


# -- each branch ---------------------------------------------------------------------------------------


def test_fresh_run_opens_the_first_stage(traced) -> None:
    for overrides, first in (({}, "start_source"), ({"transfer": False}, "start_target")):
        trace = traced(**overrides)
        created = trace.entered(first)
        assert created.last_seq == 1 and trace.nodes[0] == first and next_node(created, trace.config) == first


def test_a_closed_source_stage_goes_to_transfer_and_a_closed_target_stage_to_test(traced) -> None:
    trace = traced()
    cfg = trace.config
    before_transfer = trace.entered("transfer")
    assert before_transfer.stages_completed == ("source",) and next_node(before_transfer, cfg) == "transfer"
    before_test = trace.entered("test")
    assert before_test.stages_completed == ("source", "target") and next_node(before_test, cfg) == "test"


def test_after_the_tests_the_run_finishes_and_a_finished_or_failed_run_ends(traced, tmp_path) -> None:
    trace = traced()
    cfg = trace.config
    last = trace.entered("finish")
    assert untested_role(last, cfg) is None and next_node(last, cfg) == "finish"
    done = trace.log.state(trace.run_id)
    assert done.status == "completed" and next_node(done, cfg) == END
    log = EventLog(tmp_path / "f.db")
    run_id = create_run(log, make_config({**SMALL, "scorer": "fake:fail=1"}))
    with pytest.raises(TPromptError):
        Runner(log, run_id).run()
    failed = log.state(run_id)
    assert failed.status == "failed" and next_node(failed, failed.config) == END  # type: ignore[arg-type]


def test_test_answers_are_evaluated_before_the_next_test(traced) -> None:
    trace = traced()
    cfg = trace.config
    first = trace.nodes.index("test")
    assert trace.nodes[first:] == ["test", "evaluate"] * 3 + ["finish"]
    answered = trace.entered("evaluate", trace.nodes[:first].count("evaluate") + 1)
    assert answered.in_flight is None and answered.unevaluated and next_node(answered, cfg) == "evaluate"
    assert next_node(trace.entered("test", 2), cfg) == "test"


def test_a_proposed_step_is_scored_then_evaluated_then_closed(traced) -> None:
    trace = traced()
    i = trace.nodes.index("propose")
    assert trace.nodes[i: i + 5] == ["propose", "score", "evaluate", "close_step", "propose"]  # step 1 of 2
    assert [next_node(e.state, trace.config) for e in trace.entries[i: i + 5]] == trace.nodes[i: i + 5]


def test_a_proposal_with_nothing_new_closes_the_step(traced) -> None:
    # Every proposal is longer than max_prompt_chars, so each is rejected: the steps propose nothing new.
    trace = traced(transfer=False, max_prompt_chars=20)
    proposed = trace.entry("propose").events[0].event
    assert proposed.type == "step.proposed" and proposed.candidates == [] and proposed.rejected  # type: ignore[union-attr]
    empty = trace.entered("close_step", 2)
    assert empty.in_flight == 1 and not empty.pending and next_node(empty, trace.config) == "close_step"
    i = trace.nodes.index("propose")
    assert trace.nodes[i: i + 2] == ["propose", "close_step"]


def test_inserted_nodes_revise_a_proposed_step_first_in_order(traced, tmp_path) -> None:
    trace = traced(chain=("critic",))
    cfg, edges = trace.config, allowed(trace.config, ("critic",))
    i = trace.nodes.index("propose")
    assert trace.nodes[i: i + 3] == ["propose", "critic", "score"]
    assert trace.nodes.count("critic") == cfg.steps * 2
    for ran in trace.executions:
        assert all(dst in edges[src] for src, dst in itertools.pairwise([START, *ran, END]))
    assert all(next_node(run, cfg, chain=("critic",)) == node for run, node in trace.points)
    two = traced(chain=("critic", "editor"))
    i = two.nodes.index("propose")
    assert two.nodes[i: i + 4] == ["propose", "critic", "editor", "score"]
    assert all(next_node(run, cfg, chain=("critic", "editor")) == node for run, node in two.points)
    revised = two.entered("editor")  # revised by the critic, not yet by the editor
    assert next_node(revised, cfg, chain=("critic", "editor")) == "editor"
    assert next_node(revised, cfg, chain=("critic",)) == "score"
    # Paused after every node and resumed by the graph's own routing (resume_at, given the chain by build_graph):
    # the same nodes in the same order.
    log = TracingLog(tmp_path / "paused.db")
    paused = drive(log, create_run(log, make_config(SMALL)), ("critic", "editor"), pause_every_node=True)
    assert all(len(ran) == 1 for ran in paused.executions) and paused.nodes == two.nodes


def test_review_pauses_each_proposed_step_before_it_is_scored(traced) -> None:
    trace = traced(review=True)
    cfg = trace.config
    assert trace.nodes.count("review") == cfg.steps * 2  # every proposed step of both stages, never a step 0
    assert [ran[-1] for ran in trace.executions[:-1]] == ["review"] * (cfg.steps * 2)
    assert [ran[0] for ran in trace.executions[1:]] == ["score"] * (cfg.steps * 2)  # accepted: scored next
    proposed = trace.entered("review")
    assert proposed.in_flight == 1 and next_node(proposed, cfg) == "review"
    assert trace.nodes[:2] == ["start_source", "score"]  # the original prompt is not reviewed


# -- racing, budget, patience, top-k ------------------------------------------------------------------------


def test_rung_sizes_halve_up_to_the_examples_and_drop_empty_rungs() -> None:
    def config(**overrides: object) -> RunConfig:
        return make_config({**SMALL, **overrides})

    assert rung_sizes(config(examples=8, racing_rungs=3)) == [2, 4, 8]
    assert rung_sizes(config(examples=16, racing_rungs=4)) == [2, 4, 8, 16]
    assert rung_sizes(config(examples=2, racing_rungs=4)) == [1, 2]


def test_racing_scores_a_rung_then_keeps_the_better_half(traced) -> None:
    trace = traced(budget="racing", candidates=4, examples=8)
    cfg = trace.config
    step = trace.in_step("source", 1)
    assert [e.node for e in step] == ["score", "evaluate"] * 3 + ["close_step"]
    rungs = [score_jobs(e.state, cfg) for e in step if e.node == "score"]
    assert [[(j.rung, j.n_examples, j.new_calls) for j in jobs] for jobs in rungs] == [
        [(0, 2, 2)] * 4, [(1, 4, 2)] * 2, [(2, 8, 4)]]
    for e, jobs in zip([e for e in step if e.node == "score"], rungs, strict=True):  # the node did the rule's jobs
        assert [(a.event.prompt_id, a.event.rung) for a in e.events] == [(j.candidate.prompt_id, j.rung) for j in jobs]
    after_rung0 = step[1].state
    assert score_jobs(after_rung0, cfg) == [] and next_node(after_rung0, cfg) == "evaluate"  # the ranking needs them
    ranked = step[2].state
    best_two = sorted(ranked.step_scores("source", 1), key=lambda s: -s.objective)[:2]
    assert {j.candidate.prompt_id for j in rungs[1]} == {s.prompt_id for s in best_two}
    assert score_jobs(step[-1].state, cfg) == [] and next_node(step[-1].state, cfg) == "close_step"
    assert [j.n_examples for j in score_jobs(trace.entered("score"), cfg)] == [8]  # step 0 (one prompt): no race


def test_the_scorer_budget_caps_jobs_and_then_closes_the_stage(traced) -> None:
    trace = traced(scorer_budget=10, examples=4)
    cfg = trace.config
    step0 = trace.entered("score")
    assert budget_left(step0, cfg) == 10 and not budget_spent(step0, cfg)
    proposed = trace.entered("score", 2)
    assert budget_left(proposed, cfg) == 6
    assert len(score_jobs(proposed, cfg)) == 1  # 3 candidates x 4 calls; only one fits in 6
    closing = trace.entry("close_step", 2)
    run = closing.state
    assert budget_left(run, cfg) == 2 and budget_spent(run, cfg)
    assert score_jobs(run, cfg) == [] and next_node(run, cfg) == "close_step"
    rule = closing_events(run, cfg, "source")
    assert [e.type for e in rule] == ["step.completed", "stage.completed"] and rule[0].stop  # type: ignore[attr-defined]
    assert [e.event for e in closing.events] == rule  # what the node appended is what the rule says
    assert trace.nodes[trace.nodes.index("close_step", trace.nodes.index("close_step") + 1) + 1] == "transfer"


def test_patience_stops_a_stage_without_improvement(traced) -> None:
    trace = traced(patience=1, steps=5)
    cfg = trace.config
    run = trace.entered("transfer")
    source_steps = [s.step for s in run.stage_scores("source")]
    assert run.stage_stopped and max(source_steps) < cfg.steps  # stopped before its last step
    best_by_step = {k: max(s.objective for s in run.stage_scores("source") if s.step <= k)
                    for k in range(max(source_steps) + 1)}
    last = max(source_steps)
    assert best_by_step[last] <= best_by_step[last - 1]


def test_stage_top_k_is_best_first(traced) -> None:
    trace = traced()
    run = trace.entered("transfer")
    hist = run.history("source")
    assert stage_top_k(run, "source", 2) == [hist[-1].prompt_id, hist[-2].prompt_id]
    assert run.top_k["source"] == tuple(stage_top_k(run, "source", trace.config.top_k))


def test_stage_tasks_follow_the_config_and_a_moved_target(traced) -> None:
    trace = traced(source_tasks=["ai2_science", "bbh/navigate"])
    cfg = trace.config
    run = trace.entered("start_source")
    assert stage_tasks(run, cfg, "source") == ["ai2_science", "bbh/navigate"]
    assert stage_tasks(run, cfg, "target") == ["arc_challenge"]
    assert stage_tasks(run, cfg.model_copy(update={"transfer": False}), "source") == []
    assert trace.entry("start_source").events[0].event.tasks == ["ai2_science", "bbh/navigate"]  # type: ignore[union-attr]
    moved_id = fork_run(trace.log, trace.run_id, from_prompt_id=run.original_prompt.prompt_id,  # type: ignore[union-attr]
                        overrides={"target_task": "mmlu/anatomy"})
    moved = drive(trace.log, moved_id)
    transferred = moved.entry("transfer")
    assert stage_tasks(transferred.state, cfg, "target") == ["mmlu/anatomy"]  # the fork's target, not the config's
    assert transferred.events[0].event.tasks == ["mmlu/anatomy"]  # type: ignore[union-attr]


def test_a_stage_whose_budget_is_spent_between_steps_closes_instead_of_proposing(traced) -> None:
    # A fork with a lower scorer budget: the parent's step closed without a stop, the fork's budget is spent.
    trace = traced()
    cfg = trace.config
    between = trace.entered("propose", 2)
    assert not between.stage_stopped and between.in_flight is None and next_node(between, cfg) == "propose"
    fork_id = fork_run(trace.log, trace.run_id, at_seq=between.last_seq,
                       overrides={"scorer_budget": between.scorer_calls["source"] + 1})
    fork = drive(trace.log, fork_id)
    tight = fork.config
    forked = fork.entries[0].state
    assert fork.nodes[0] == "close_step" and next_node(forked, tight) == "close_step"
    assert [e.type for e in fork.entries[0].events] == ["stage.completed"] == [
        e.type for e in closing_events(forked, tight, "source")]


# -- the compiled graph holds the rule to its edges ----------------------------------------------------------


def test_the_graph_refuses_a_destination_its_edges_do_not_allow(tmp_path) -> None:
    """An inserted node that does not record its revision would send the run back to itself: refused, not looped."""

    def silent_critic(state, runtime):  # appends nothing: the step still looks unrevised by "critic"
        return {"run": state["run"], "events": []}

    log = EventLog(tmp_path / "g.db")
    run_id = create_run(log, make_config({**SMALL, "transfer": False, "steps": 1}))
    graph = build_graph(transfer=False, nodes={"critic": silent_critic}, insert_after={"critic": "propose"})

    # Before: LangGraph's bare KeyError ("critic" is not in the after_propose path map); now one line saying what to do.
    with pytest.raises(UsageError, match="node 'critic', inserted after propose, returned without recording "
                                         "step.revised by 'critic'"):
        Runner(log, run_id, graph=graph).run()
    types = [e.type for e in log.events(run_id)]
    assert types[-2:] == ["step.proposed", "run.failed"]  # step 1 proposed, then refused: nothing of it scored
