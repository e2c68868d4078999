"""The Transfer-Prompting state machine as a LangGraph ``StateGraph``.

Topology (``tprompt graph`` draws it from LangGraph itself)::

    START -> resume_at -> (where the run's log says it stands)
    start_source -> score             (source stage, step 0: the original prompt)
    propose -> after_propose -> review | score | close_step
    review -> END                     (the run pauses for a person: tprompt review)
    score -> evaluate                 (the scorer's answers, then the evaluator's metrics)
    evaluate -> after_evaluate -> score | close_step | test | finish
    close_step -> after_step -> propose | transfer | test
    transfer -> score                 (target stage, step 0: the transferred prompts)
    test -> evaluate
    finish -> END

The target-only graph (the OPRO baseline, ``transfer=False``) is built from
the same nodes without ``start_source`` and ``transfer``; ``start_target``
seeds the target stage with the original prompt instead.

No checkpointer: the event log is the checkpoint. Every node appends its
outcome before it returns, and a resumed run enters at ``resume_at``, a
router over the projection folded from the log.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from ..stores.projection import RunState
from .context import RunContext
from .nodes import NODES, GraphState, Node
from .topology import BRANCHES as _BRANCHES
from .topology import EDGES as _EDGES

Router = Callable[[GraphState, Runtime[RunContext]], str]


def make_routers(after_propose_chain: Sequence[str] = ()) -> dict[str, Router]:
    """The graph's routers, one per branching point, reading only the graph state and the run's config.

    ``after_propose_chain``: nodes inserted between ``propose`` and the
    scoring (a critic, say); a resumed run re-enters the first of them that
    has not revised the step in flight (``step.revised`` by its name).
    """

    def in_step(run: RunState, ctx: RunContext) -> str:
        if run.step_untouched() and (run.in_flight or 0) > 0:
            for name in after_propose_chain:
                if name not in run.revisions:
                    return name
        if run.awaiting_review():
            return "review"
        if ctx.score_jobs(run):
            return "score"
        return "evaluate" if run.unevaluated else "close_step"

    def resume_at(state: GraphState, runtime: Runtime[RunContext]) -> str:
        """Where a run enters the graph, from its log alone (a fresh run: the first stage)."""
        run, ctx = state["run"], runtime.context
        if run.status in ("completed", "failed"):
            return END
        if run.unevaluated and run.in_flight is None:
            return "evaluate"  # test answers
        for stage in ("source", "target"):
            if stage == "source" and not ctx.config.transfer:
                continue
            if stage in run.stages_completed:
                continue
            if run.stage != stage:
                return "start_source" if stage == "source" else ("transfer" if ctx.config.transfer else "start_target")
            if run.in_flight is not None:
                return in_step(run, ctx)
            if run.stage_stopped or run.step >= ctx.config.stage_steps(stage) or ctx.budget_spent(run):
                return "close_step"
            return "propose"
        return "test" if any(r not in run.tested for r in ctx.test_roles()) else "finish"

    def after_propose(state: GraphState, runtime: Runtime[RunContext]) -> str:
        """A person reviews the candidates (``--review``), or the scorer answers under them."""
        run, ctx = state["run"], runtime.context
        if run.awaiting_review():
            return "review"
        return "score" if ctx.score_jobs(run) else "close_step"  # nothing new proposed: the step closes

    def after_evaluate(state: GraphState, runtime: Runtime[RunContext]) -> str:
        """More candidates (or the next racing rung) to score, the step to close, or the next test."""
        run, ctx = state["run"], runtime.context
        if run.in_flight is not None:
            return "score" if ctx.score_jobs(run) else "close_step"
        return "test" if any(r not in run.tested for r in ctx.test_roles()) else "finish"

    def after_step(state: GraphState, runtime: Runtime[RunContext]) -> str:
        """The next step, or on to the target stage (transfer) or to testing once a stage is closed."""
        run = state["run"]
        if run.stage in run.stages_completed:
            return "transfer" if run.stage == "source" else "test"
        return "propose"

    return {"resume_at": resume_at, "after_propose": after_propose, "after_evaluate": after_evaluate,
            "after_step": after_step}


def build_graph(
    *,
    transfer: bool = True,
    nodes: Mapping[str, Node] | None = None,
    insert_after: Mapping[str, str] | None = None,
) -> Any:
    """Compile the Transfer-Prompting graph (or, ``transfer=False``, the target-only OPRO graph).

    Args:
        transfer: source stage + transfer (True) or the target stage alone.
        nodes: node functions replacing built-in nodes of the same name, or
            new nodes (each ``fn(state, runtime) -> update``, see
            :mod:`tprompt.graph.nodes`).
        insert_after: ``{new_node: existing_node}``: run ``new_node`` right
            after ``existing_node``, which then leads only to it; ``new_node``
            takes over ``existing_node``'s outgoing edges. Applied in order.
    """
    table = dict(NODES)
    table.update(nodes or {})
    dropped = {"start_target"} if transfer else {"start_source", "transfer"}
    names = [n for n in table if n not in dropped]
    outgoing: dict[str, Any] = {}  # node -> router name or a single successor
    for src, (router, _) in _BRANCHES.items():
        outgoing[src] = router
    for src, dst in _EDGES:
        outgoing[src] = dst
    chain: list[str] = []
    for new, after in (insert_after or {}).items():
        if new not in table:
            raise ValueError(f"insert_after names {new!r}, which is not a node; pass it in nodes=")
        outgoing[new] = outgoing.get(after, END)
        outgoing[after] = new
        if after == "propose" or after in chain:
            chain.append(new)
    routers = make_routers(chain)
    graph = StateGraph(GraphState, context_schema=RunContext)
    for name in names:
        graph.add_node(name, table[name])
    for src in [START, *names]:
        out = outgoing.get(src)
        if out is None:
            raise ValueError(f"node {src!r} has no outgoing edge; give it a place with insert_after=")
        if out in routers:
            choices = [c for c in _choices(out) if c == END or c in names]
            if out == "resume_at":
                choices += [c for c in chain if c not in choices]
            graph.add_conditional_edges(src, routers[out], {c: c for c in choices})
        else:
            graph.add_edge(src, out)
    return graph.compile(name="transfer-prompting" if transfer else "target-only")


def _choices(router: str) -> tuple[str, ...]:
    for name, choices in _BRANCHES.values():
        if name == router:
            return choices
    raise KeyError(router)


def recursion_limit(config: Any, n_nodes: int) -> int:
    """An upper bound on the graph's steps for one execution of ``config`` (LangGraph's recursion limit)."""
    rungs = config.racing_rungs if config.budget == "racing" else 1
    per_step = n_nodes + 2 * rungs
    steps = config.stage_steps("target") + 1 + ((config.stage_steps("source") + 1) if config.transfer else 0)
    return steps * per_step + 2 * 3 + 10


def draw(*, transfer: bool = True, fmt: str = "mermaid") -> str:
    """The graph as LangGraph draws it: Mermaid source or ASCII art."""
    drawable = build_graph(transfer=transfer).get_graph()
    return drawable.draw_ascii() if fmt == "ascii" else drawable.draw_mermaid()


__all__ = ("build_graph", "draw", "make_routers", "recursion_limit")
