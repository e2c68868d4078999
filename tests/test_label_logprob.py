"""``auto`` scores an answer-space (label) task by option probabilities on a backend that scores whole labels,
as it does a multiple-choice task (issue 29): the labels' probabilities as the reply's first tokens."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from tprompt.evaluator import load_task, resolve_mode
from tprompt.graph import Runner, create_run, make_config
from tprompt.models import get_model
from tprompt.models.base import ChatBackend
from tprompt.models.types import ChatRequest, OptionsRequest
from tprompt.stores import EventLog
from tprompt.stores.events import CandidateAnswered

LABELS = ("billing", "technical support", "account", "other")


def write_tickets(path: Path, n: int = 20) -> Path:
    rows = [{"question": f"Ticket {i}: my problem number {i}.", "answer": LABELS[i % len(LABELS)]} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


class FirstTokenOnly(ChatBackend):
    """A backend that reads options from the first token's log-probabilities (an OpenAI-compatible server)."""

    spec, revision, supports_option_probs = "first-token", "r1", True

    def generate(self, requests: Sequence[ChatRequest]) -> list[tuple[str, int, int]]:
        raise AssertionError("not called")

    def option_probs(self, requests: Sequence[OptionsRequest]) -> list[tuple[tuple[float, ...], int]]:
        raise AssertionError("not called")


def test_auto_picks_option_probabilities_for_a_label_task_on_a_backend_that_scores_whole_labels(tmp_path: Path) -> None:
    task = load_task(str(write_tickets(tmp_path / "tickets.jsonl")))
    assert task.kind == "string" and set(task.answer_space or ()) == set(LABELS)
    # was: generate, as for any task without lettered options
    assert resolve_mode("auto", task, get_model("fake")) == "logprob"
    # A first-token reader cannot tell "technical support" from another label starting alike: generate.
    assert resolve_mode("auto", task, FirstTokenOnly()) == "generate"
    assert resolve_mode("auto", load_task("arc_challenge"), FirstTokenOnly()) == "logprob"  # letters are one token
    assert resolve_mode("auto", load_task("gsm8k"), get_model("fake")) == "generate"  # numbers have no answer space


@pytest.mark.parametrize("mode", ["auto", "logprob"])
def test_a_run_on_a_label_task_scores_the_labels_probabilities(tmp_path: Path, mode: str) -> None:
    tickets = str(write_tickets(tmp_path / "tickets.jsonl"))
    log = EventLog(tmp_path / "t.db")
    config = make_config(dict(source_tasks=[], transfer=False, target_task=tickets, proposer="fake", scorer="fake",
                              steps=1, candidates=1, examples=4, test_examples=4, mode=mode))
    run_id = create_run(log, config)  # was (logprob): "mode logprob needs multiple-choice tasks" when opened
    state = Runner(log, run_id).run()
    assert state.status == "completed" and state.modes[tickets] == "logprob"
    answered = [se.event for se in log.events(run_id) if isinstance(se.event, CandidateAnswered)]
    assert answered and all(a.mode == "logprob" for a in answered)
    for a in answered[0].answers:  # each answer is the most probable label, its probability the confidence
        assert a.parsed in LABELS and a.followed_format and 0.25 <= a.confidence <= 1.0
    with sqlite3.connect(tmp_path / "t.db") as conn:
        kinds = {k for (k,) in conn.execute("SELECT DISTINCT kind FROM transcripts WHERE agent = 'scorer'")}
        body = json.loads(conn.execute("SELECT b.body FROM transcripts t JOIN bodies b ON b.hash = t.request_hash "
                                       "WHERE t.agent = 'scorer' LIMIT 1").fetchone()[0])
    assert kinds == {"options"} and sorted(body["options"]) == sorted(LABELS)  # the labels themselves, all of them


def test_task_from_records_infers_the_answer_kind_as_a_task_file_does(tmp_path: Path) -> None:
    from tprompt import task_from_records

    path = write_tickets(tmp_path / "tickets.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    from_file, from_records = load_task(str(path)), task_from_records("tickets", rows, description="Route the ticket.")
    # was: a free string task (no answer space) from Python, so auto never scored its labels' probabilities
    assert (from_records.kind, from_records.answer_space) == (from_file.kind, from_file.answer_space)
    assert from_records.kind == "string" and set(from_records.answer_space or ()) == set(LABELS)
    assert resolve_mode("auto", from_records, get_model("fake")) == "logprob"
    sums = task_from_records("sums", [{"question": f"{i} + 1?", "answer": str(i + 1)} for i in range(5)],
                             description="Add.")
    assert sums.kind == "number"  # compared by value, as a file's numbers are
