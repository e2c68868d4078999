"""The Transfer-Prompting state machine as a LangGraph ``StateGraph``.

Nodes are the agents (propose, score, evaluate, transfer) plus the stage and
run bookkeeping (start_source, test, finish, pause). Every node's outcome is
already in the event log when it returns; the graph state carries only the
last seq, and the conditional edges read the run's projection. No LangGraph
checkpointer is used: the log is the source of truth.
"""

from __future__ import annotations

from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph

from .runner import NODES, Runner, node_function


class GraphState(TypedDict):
    seq: int


def build_graph(runner: Runner) -> Any:
    """Compile the graph for ``runner``'s run."""
    graph = StateGraph(GraphState)
    for name in NODES:
        graph.add_node(name, node_function(runner, name))
    targets: dict[str, str] = {name: name for name in NODES}
    targets["end"] = END

    def route(_: GraphState) -> str:
        return runner.next_node()

    graph.add_conditional_edges(START, route, targets)
    for name in NODES:
        if name == "pause":
            graph.add_edge(name, END)
        else:
            graph.add_conditional_edges(name, route, targets)
    return graph.compile()


__all__ = ("GraphState", "build_graph")
