"""The state machine's shape without LangGraph: its edges, and which node wrote an event.

:func:`tprompt.graph.build.build_graph` compiles these edges into LangGraph;
front ends that only draw the graph (the TUI) read them here, so drawing does
not import LangGraph.
"""

from __future__ import annotations

from typing import assert_never

from ..stores import events

START, END = "__start__", "__end__"

#: branching point -> (router, the nodes it may choose)
BRANCHES: dict[str, tuple[str, tuple[str, ...]]] = {
    START: ("resume_at", ("start_source", "transfer", "start_target", "propose", "review", "score", "judge",
                          "evaluate", "close_step", "test", "finish", END)),
    "propose": ("after_propose", ("review", "score", "close_step")),
    "evaluate": ("after_evaluate", ("score", "close_step", "test", "finish")),
    "close_step": ("after_step", ("propose", "transfer", "test")),
}
#: fixed edges
EDGES: tuple[tuple[str, str], ...] = (
    ("start_source", "score"),
    ("start_target", "score"),
    ("transfer", "score"),
    ("review", END),
    ("score", "evaluate"),
    ("test", "evaluate"),
    ("finish", END),
)
#: fixed edges with an LLM judge: the recorded answers go to the judge, then to the evaluator
JUDGE_EDGES: tuple[tuple[str, str], ...] = tuple(
    (src, "judge" if dst == "evaluate" else dst) for src, dst in EDGES
) + (("judge", "evaluate"),)
#: the built-in nodes in the order the algorithm meets them
ORDER: tuple[str, ...] = ("start_source", "start_target", "propose", "review", "score", "judge", "evaluate",
                          "close_step", "transfer", "test", "finish")


def fixed_edges(judge: bool = False) -> tuple[tuple[str, str], ...]:
    """The fixed edges of the graph without (or with) an LLM judge between the scoring and the evaluator."""
    return JUDGE_EDGES if judge else EDGES


def dropped_nodes(transfer: bool = True, judge: bool = False) -> set[str]:
    """The built-in nodes a graph of this shape leaves out."""
    dropped = {"start_target"} if transfer else {"start_source", "transfer"}
    return dropped if judge else dropped | {"judge"}


def successors(transfer: bool = True, judge: bool = False) -> dict[str, list[str]]:
    """node -> the nodes it may lead to, for the Transfer-Prompting (or the target-only) graph, with or without a judge."""
    dropped = dropped_nodes(transfer, judge)
    out: dict[str, list[str]] = {}
    for src, (_, choices) in BRANCHES.items():
        if src != START:
            out[src] = [c for c in choices if c not in dropped]
    for src, dst in fixed_edges(judge):
        out[src] = [dst]
    return {n: out[n] for n in ORDER if n not in dropped}


def node_of(stored: events.StoredEvent, *, transfer: bool = True) -> str | None:
    """The node that appends an event like ``stored`` (None for the driver's marks: resume, pause, failure)."""
    ev = stored.event
    match ev:
        case events.StageStarted() | events.StepProposed(step=0):
            if ev.stage == "source":
                return "start_source"
            return "transfer" if transfer else "start_target"
        case events.StepProposed():
            return "propose"
        case events.StepRevised():
            return ev.by
        case events.CandidateAnswered():
            return "score"
        case events.TestAnswered():
            return "test"
        case events.CandidateJudged() | events.TestJudged():
            return "judge"
        case events.CandidateScored() | events.PromptTested():
            return "evaluate"
        case events.StepCompleted() | events.StageCompleted():
            return "close_step"
        case events.TransferSelected():
            return "transfer"
        case events.RunCompleted():
            return "finish"
        case events.RunPaused():
            return "review" if ev.reason == "review" else None
        case events.RunCreated() | events.RunForked() | events.RunResumed() | events.RunFailed():
            return None
        case _:
            assert_never(ev)


__all__ = ("BRANCHES", "EDGES", "END", "JUDGE_EDGES", "ORDER", "START", "dropped_nodes", "fixed_edges", "node_of",
           "successors")
