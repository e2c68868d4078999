"""A critic node between ``propose`` and ``score``, on a task given as Python rows.

Run: python examples/critic_node.py [DB] [--model SPEC]   (default: a temporary file, the fake model)

The critic asks the proposer model to tighten each proposed prompt and records
its revision as a ``step.revised`` event, so the run keeps everything a tprompt
run has: events, transcripts (agent "critic"), replay, fork and the TUI:

    tprompt --db DB show RUN ; tprompt --db DB transcript RUN --agent critic ; tprompt --db DB ui RUN

With ``--model fake`` (the default, offline and instant) the "critic" is the
fake model: this shows the mechanics, not a better prompt. Use a served model
(e.g. --model openai:gpt-4o-mini) for real critiques.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from tprompt import optimize, task_from_records
from tprompt.agents.prompts import PromptTemplate
from tprompt.models import ChatRequest
from tprompt.stores.events import PromptCandidate, StepRevised, prompt_id_of

ROWS = [
    {"question": "What is the capital of France?", "choices": ["Paris", "Lyon", "Nice"], "answer": "Paris"},
    {"question": "What is the capital of Italy?", "choices": ["Milan", "Rome", "Turin"], "answer": "Rome"},
    {"question": "What is the capital of Spain?", "choices": ["Madrid", "Seville", "Bilbao"], "answer": "Madrid"},
    {"question": "What is the capital of Japan?", "choices": ["Osaka", "Kyoto", "Tokyo"], "answer": "Tokyo"},
    {"question": "What is the capital of Canada?", "choices": ["Toronto", "Ottawa", "Vancouver"], "answer": "Ottawa"},
    {"question": "What is the capital of Kenya?", "choices": ["Nairobi", "Mombasa", "Kisumu"], "answer": "Nairobi"},
    {"question": "What is the capital of Peru?", "choices": ["Cusco", "Lima", "Arequipa"], "answer": "Lima"},
    {"question": "What is the capital of Egypt?", "choices": ["Cairo", "Giza", "Luxor"], "answer": "Cairo"},
]

#: The critic's prompt, declared as data: its name and version are recorded with every request it renders.
CRITIC = PromptTemplate(
    name="critic.tighten",
    version=1,
    text="Rewrite this instruction for a quiz-answering model so it is shorter and clearer. "
    "Reply with the instruction only.\n\n{instruction}",
)


def critic(state, runtime):
    """A node: one revision per candidate from the proposer model, recorded as step.revised by 'critic'."""
    ctx, run = runtime.context, state["run"]
    requests = [ChatRequest(messages=(("user", CRITIC.render(instruction=c.text)),), max_tokens=96,
                            seed=ctx.config.seed, templates=(CRITIC.ref,))
                for c in run.pending]
    # Filed under this run, the step in flight and the event this node appends next.
    replies = ctx.call_site(run, "critic").chat(ctx.proposer, requests)
    revised = []
    for cand, reply in zip(run.pending, replies):
        text = reply.text.strip()
        keep = text if text and len(text) <= ctx.config.max_prompt_chars else cand.text
        revised.append(PromptCandidate(prompt_id=prompt_id_of(keep), text=keep, origin="edited"))
    unique = list({c.prompt_id: c for c in revised}.values())
    stored, new_run = ctx.emit(run, StepRevised(stage=run.stage, step=run.in_flight, by="critic",
                                               candidates=unique, call_ids=[r.call_id for r in replies]))
    return {"run": new_run, "events": stored}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("db_path", metavar="db", nargs="?", help="SQLite file (default: a temporary one)")
    parser.add_argument("--model", default="fake")
    args = parser.parse_args()
    db = Path(args.db_path) if args.db_path else Path(tempfile.mkdtemp()) / "critic.db"
    task = task_from_records("capitals", ROWS, description="Pick the capital city of the country.")
    state = optimize(
        db, target=task, transfer=False, model=args.model, steps=2, candidates=2, examples=4, test_examples=4,
        mode="generate", nodes={"critic": critic}, insert_after={"critic": "propose"},
    )
    print(f"run {state.run_id} {state.status} in {db}")
    for role, result in state.tested.items():
        print(f"  {role:12s} objective {result.objective:.3f}  {result.text[:70]!r}")
    print(f"next: tprompt --db {db} show {state.run_id}")


if __name__ == "__main__":
    main()
