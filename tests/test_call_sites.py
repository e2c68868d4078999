"""Call sites and declared prompts (issue 18, items 6 and 7): a recorder bound to (agent, run, step, seq),
every agent request naming its template versions (transcripts, cache key), the run lease taken once."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from test_graph import run_in_process

from tprompt.agents.prompts import EXEMPLAR_ITEM, META_PROMPT, PROPOSER_SYSTEM, PROPOSER_TEMPLATES, PromptTemplate
from tprompt.evaluator.prompts import SCORER_TEMPLATE
from tprompt.models import CallSite, ChatRequest, OptionsRequest, Recorder, cache_key, chat_request_body, get_model, options_request_body
from tprompt.stores import EventLog

MESSAGES = (("user", "Which is a mammal?\nA) shark\nB) whale"),)


def test_a_bound_recorder_files_every_call_under_its_site(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    with Recorder(db) as rec:
        site = rec.at("critic", run_id="r-1", step="source:2", seq=7)
        assert isinstance(site, CallSite)
        site.chat(get_model("fake"), [ChatRequest(messages=MESSAGES)])
        site.moved(seq=8).option_probs(get_model("fake"), [OptionsRequest(messages=MESSAGES, options=("A", "B"))])
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT agent, run_id, step, seq, kind FROM transcripts ORDER BY rowid").fetchall()
    assert rows == [("critic", "r-1", "source:2", 7, "chat"), ("critic", "r-1", "source:2", 8, "options")]


def test_template_versions_are_in_the_cache_key_and_absent_ones_keep_the_old_key() -> None:
    fake = get_model("fake")

    def key(*templates: str) -> str:
        return cache_key(chat_request_body(fake, ChatRequest(messages=MESSAGES, templates=templates)))

    assert key("proposer.meta@v1") != key("proposer.meta@v2") != key()
    assert "templates" not in chat_request_body(fake, ChatRequest(messages=MESSAGES))
    body = options_request_body(fake, OptionsRequest(messages=MESSAGES, options=("A",), templates=("scorer.user@v1",)))
    assert body["templates"] == ["scorer.user@v1"]
    bumped = PromptTemplate(name=META_PROMPT.name, version=META_PROMPT.version + 1, text=META_PROMPT.text)
    assert bumped.ref != META_PROMPT.ref and META_PROMPT.ref == "proposer.meta@v1"


def test_every_agent_request_of_a_run_names_its_templates(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    run_in_process(db)
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT t.agent, b.body FROM transcripts t JOIN bodies b ON b.hash = t.request_hash").fetchall()
    by_agent: dict[str, set[tuple[str, ...]]] = {}
    for agent, body in rows:
        by_agent.setdefault(agent, set()).add(tuple(json.loads(body).get("templates", ())))
    assert by_agent == {"proposer": {PROPOSER_TEMPLATES}, "scorer": {(SCORER_TEMPLATE.ref,)}}
    assert {PROPOSER_SYSTEM.ref, EXEMPLAR_ITEM.ref} <= set(PROPOSER_TEMPLATES)


def test_a_cli_run_takes_its_lease_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_graph import SMALL

    from tprompt.commands.run import execute
    from tprompt.graph import create_run, make_config
    from tprompt.stores import leases

    taken: list[str] = []
    real = leases.acquire
    monkeypatch.setattr(leases, "acquire",
                        lambda log, run_id, me=None, **kw: taken.append(run_id) or real(log, run_id, me, **kw))
    log = EventLog(tmp_path / "l.db")
    run_id = create_run(log, make_config({**SMALL, "steps": 1}))
    assert execute(log, run_id, json_=True).status == "completed"
    assert taken == [run_id]
