"""A two-prompt program for tprompt to optimize: summarize a PubMed abstract, then answer its question.

Run it from this folder (docs/programs.md):

    tprompt run --program pubmed:run --target pubmedqa.jsonl --model fake --steps 2

tprompt imports this module, starts from PROMPTS, and calls ``run`` once per
row with the row's fields (``question``, ``context``), the candidate's prompt
texts and ``llm``, a LangChain chat model whose every call goes through
tprompt's recorder (cached, and a transcript row naming the prompt it carries).
"""

from __future__ import annotations

from typing import Any

PROMPTS = {
    "summarize": "Summarize what the abstract found that bears on the question, in two sentences.",
    "answer": "Answer the research question from the summary of its abstract.",
}


def run(inputs: dict[str, str], *, prompts: dict[str, str], llm: Any) -> str:
    """Two calls: the summary of the context for the question, then the answer from that summary."""
    summary = llm.bind(max_tokens=80).invoke([
        ("system", prompts["summarize"]),
        ("human", f"Question: {inputs['question']}\n\nAbstract: {inputs['context']}"),
    ]).content
    reply = llm.bind(max_tokens=16).invoke([
        ("system", prompts["answer"]),
        ("human", f"Question: {inputs['question']}\nSummary: {summary}\n\n"
                  "Reply in exactly this format:\nAnswer: <one of yes / no / maybe>"),
    ]).content
    return str(reply)
