"""The Transfer-Prompting state machine as a LangGraph ``StateGraph``.

Topology (``tprompt graph`` draws it from LangGraph itself)::

    START -> resume_at -> (where the run's log says it stands)
    start_source -> score             (source stage, step 0: the original prompt)
    propose -> after_propose -> review | score | close_step
    review -> END                     (the run pauses for a person: tprompt review)
    score -> evaluate                 (the scorer's answers, then the evaluator's metrics)
    score -> judge -> evaluate        (with an LLM judge: its judgements between the two)
    evaluate -> after_evaluate -> score | close_step | test | finish
    close_step -> after_step -> propose | transfer | test
    transfer -> score                 (target stage, step 0: the transferred prompts)
    test -> evaluate                  (test -> judge -> evaluate with a judge)
    finish -> END

The target-only graph (the OPRO baseline, ``transfer=False``) is built from
the same nodes without ``start_source`` and ``transfer``; ``start_target``
seeds the target stage with the original prompt instead.

Every branching point routes by one pure rule, :func:`tprompt.graph.rules.next_node`
over (the run's projection, its config); each passes it the destinations its
edges allow, which LangGraph enforces.

No checkpointer: the event log is the checkpoint. Every node appends its
outcome before it returns, and a resumed run enters at ``resume_at``: the same
rule over the projection folded from the log. (One flat graph, not a subgraph
per stage: the source and target stages run the same nodes, and the nodes
read the stage from the state, so ``tprompt graph`` draws the loop once.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from langchain_core.runnables.graph import Graph
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from ..errors import UsageError
from .config import RunConfig
from .context import RunContext
from .nodes import NODES, GraphState, Node
from .rules import next_node
from .topology import BRANCHES as _BRANCHES
from .topology import dropped_nodes, fixed_edges

Router = Callable[[GraphState, Runtime[RunContext]], str]


def make_routers(after_propose_chain: Sequence[str] = ()) -> dict[str, Router]:
    """The graph's routers, one per branching point, all the one rule :func:`~.rules.next_node`.

    Each is compiled with its branching point's destinations (``topology.BRANCHES``)
    as LangGraph's path map, so a destination the drawn edges do not allow is
    refused, not taken. ``after_propose_chain``: nodes inserted between
    ``propose`` and the scoring (a critic, say); a proposed step goes to the
    first of them that has not revised it yet (``step.revised`` by its name).
    """
    chain = tuple(after_propose_chain)

    def router(name: str) -> Router:
        def route(state: GraphState, runtime: Runtime[RunContext]) -> str:
            return next_node(state["run"], runtime.context.config, chain=chain)

        route.__name__ = route.__qualname__ = name
        return route

    return {name: router(name) for name, _ in _BRANCHES.values()}


def build_graph(
    *,
    transfer: bool = True,
    judge: bool = False,
    nodes: Mapping[str, Node] | None = None,
    insert_after: Mapping[str, str] | None = None,
) -> Any:
    """Compile the Transfer-Prompting graph (or, ``transfer=False``, the target-only OPRO graph).

    Args:
        transfer: source stage + transfer (True) or the target stage alone.
        judge: an LLM judge between the scoring and the evaluator (score -> judge -> evaluate,
            test -> judge -> evaluate); a run with ``judge`` in its config needs this shape.
        nodes: node functions replacing built-in nodes of the same name, or
            new nodes (each ``fn(state, runtime) -> update``, see
            :mod:`tprompt.graph.nodes`).
        insert_after: ``{new_node: existing_node}``: run ``new_node`` right
            after ``existing_node``, which then leads only to it; ``new_node``
            takes over ``existing_node``'s outgoing edges. Applied in order.
    """
    table = dict(NODES)
    table.update(nodes or {})
    dropped = dropped_nodes(transfer, judge)
    names = [n for n in table if n not in dropped]
    outgoing: dict[str, Any] = {}  # node -> router name or a single successor
    for src, (router, _) in _BRANCHES.items():
        outgoing[src] = router
    for src, dst in fixed_edges(judge):
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
        # Nodes take (state, runtime) positionally; LangGraph's protocol types runtime keyword-only.
        graph.add_node(name, cast(Any, table[name]))
    for src in [START, *names]:
        out = outgoing.get(src)
        if out is None:
            raise ValueError(f"node {src!r} has no outgoing edge; give it a place with insert_after=")
        if out in routers:
            choices = [c for c in _choices(out) if c == END or c in names]
            if out == "resume_at":
                choices += [c for c in chain if c not in choices]
            route = _must_revise(src, routers[out]) if src in chain else routers[out]
            graph.add_conditional_edges(src, route, {c: c for c in choices})
        else:
            graph.add_edge(src, out)
    return graph.compile(name="transfer-prompting" if transfer else "target-only")


def _must_revise(name: str, route: Router) -> Router:
    """``route`` after the inserted node ``name``, which must record ``step.revised`` by its name: without it the
    run would come back to ``name`` for ever (the rule tells that a chain node ran only by its revision)."""

    def after(state: GraphState, runtime: Runtime[RunContext]) -> str:
        nxt = route(state, runtime)
        if nxt == name:
            raise UsageError(
                f"node {name!r}, inserted after propose, returned without recording step.revised by {name!r}: "
                f"emit StepRevised(..., by={name!r}, candidates=...) with ctx.emit, the candidates unchanged if it "
                "changes none (docs/python.md, \"The graph and its nodes\")")
        return nxt

    after.__name__ = after.__qualname__ = getattr(route, "__name__", "route")
    return after


def _choices(router: str) -> tuple[str, ...]:
    for name, choices in _BRANCHES.values():
        if name == router:
            return choices
    raise KeyError(router)


def recursion_limit(config: RunConfig, n_nodes: int) -> int:
    """An upper bound on the graph's steps for one execution of ``config`` (LangGraph's recursion limit)."""
    rungs = config.racing_rungs if config.budget == "racing" else 1
    per_step = n_nodes + 2 * rungs
    steps = config.stage_steps("target") + 1 + ((config.stage_steps("source") + 1) if config.transfer else 0)
    return steps * per_step + 2 * 3 + 10


def draw(*, transfer: bool = True, judge: bool = False, fmt: str = "mermaid") -> str:
    """The graph as LangGraph draws it (with the judge node if ``judge``): Mermaid source or ASCII art."""
    drawable: Graph = build_graph(transfer=transfer, judge=judge).get_graph()
    return drawable.draw_ascii() if fmt == "ascii" else drawable.draw_mermaid()


__all__ = ("build_graph", "draw", "make_routers", "recursion_limit")
