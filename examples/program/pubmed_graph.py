"""The two-prompt PubMedQA program of pubmed.py as a LangGraph graph: a summarize node, then an answer node.

Run it from this folder (docs/programs.md):

    tprompt run --program pubmed_graph:build --target pubmedqa.jsonl --model fake --steps 2

``build(prompts, llm)`` is a factory: tprompt calls it with a candidate's
prompt texts and ``llm`` (a LangChain chat model whose every call goes through
tprompt's recorder) and invokes the compiled graph on each row's fields
(``question``, ``context``); the graph's final state's ``answer`` is the answer
scored. It sends the same requests as ``pubmed:run``, so the two share the
cache.
"""

from __future__ import annotations

from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph

PROMPTS = {
    "summarize": "Summarize what the abstract found that bears on the question, in two sentences.",
    "answer": "Answer the research question from the summary of its abstract.",
}


class State(TypedDict, total=False):
    question: str
    context: str
    summary: str
    answer: str


def build(prompts: dict[str, str], llm: Any) -> Any:
    """The graph answering one row under ``prompts``: START -> summarize -> answer -> END."""

    def summarize(state: State) -> State:
        reply = llm.bind(max_tokens=80).invoke([
            ("system", prompts["summarize"]),
            ("human", f"Question: {state['question']}\n\nAbstract: {state['context']}"),
        ])
        return {"summary": str(reply.content)}

    def answer(state: State) -> State:
        reply = llm.bind(max_tokens=16).invoke([
            ("system", prompts["answer"]),
            ("human", f"Question: {state['question']}\nSummary: {state['summary']}\n\n"
                      "Reply in exactly this format:\nAnswer: <one of yes / no / maybe>"),
        ])
        return {"answer": str(reply.content)}

    graph = StateGraph(State)
    graph.add_node("summarize", summarize)
    graph.add_node("answer", answer)
    graph.add_edge(START, "summarize")
    graph.add_edge("summarize", "answer")
    graph.add_edge("answer", END)
    return graph.compile()
