"""Events are dispatched by class; the run config they carry is a typed RunConfig read from the JSON it always was."""

from __future__ import annotations

import json

import pytest
from conftest import run_created

from tprompt.config import RunConfig
from tprompt.errors import CorruptEvent
from tprompt.stores import (
    EVENT_CLASSES,
    EVENT_TYPES,
    EventLog,
    RunCreated,
    RunForked,
    StoredEvent,
    type_of,
)
from tprompt.stores.events import Event

#: run.created's config as the first tprompt with a RunConfig wrote it (every key of that
#: version, none added since: base_url, prices, scorer_budget, review came later)
FIRST_CONFIG = {
    "name": "old", "source_tasks": ["ai2_science"], "target_task": "arc_challenge",
    "original_prompt": "Answer the question.", "proposer": "fake", "scorer": "fake",
    "proposer_temperature": 1.0, "proposer_max_tokens": 96, "scorer_temperature": 0.0, "mode": "generate",
    "steps": 3, "target_steps": None, "candidates": 2, "top_k": 2, "examples": 8, "test_examples": 10,
    "history_size": 20, "exemplars": 3, "max_prompt_chars": 800, "patience": None, "budget": "full",
    "racing_rungs": 3, "transfer": False, "weights": {"accuracy": 1.0}, "seed": 5, "concurrency": 4,
}


def _insert_run(log: EventLog, run_id: str, payload: dict) -> None:
    """A run.created row written the way an older tprompt wrote it, bypassing the library."""
    stamp = "2025-01-01T00:00:00+00:00"
    log._conn.execute(
        "INSERT INTO runs (run_id, parent_run_id, parent_seq, status, name, created_at, updated_at)"
        " VALUES (?, NULL, NULL, 'created', NULL, ?, ?)", (run_id, stamp, stamp),
    )
    log._conn.execute(
        "INSERT INTO events (run_id, seq, event_id, type, schema_version, payload, created_at)"
        " VALUES (?, 1, ?, 'run.created', 1, ?, ?)", (run_id, f"{run_id}:created", json.dumps(payload), stamp),
    )


def _created_payload(config: dict) -> dict:
    return {
        "type": "run.created", "config": config, "source_tasks": [], "target_task": "arc_challenge",
        "original_prompt": {"prompt_id": "p-1", "text": "Answer the question.", "origin": "original"}, "name": None,
    }


def test_every_event_class_is_in_the_union_and_decodes_by_its_type() -> None:
    assert set(EVENT_CLASSES) == set(Event.__subclasses__())
    assert {type_of(cls): cls for cls in EVENT_CLASSES} == EVENT_TYPES
    assert len(EVENT_TYPES) == len(EVENT_CLASSES)  # no two classes share a type literal


def test_a_stored_event_type_is_its_events(log: EventLog) -> None:
    (stored,) = log.events(log.create_run(run_created()))
    assert isinstance(stored, StoredEvent) and isinstance(stored.event, RunCreated)
    assert stored.type == stored.event.type == "run.created"
    assert stored.model_dump()["event"]["config"] == RunConfig.model_validate({}).model_dump()


def test_an_old_run_created_payload_folds_with_defaults_for_later_keys(log: EventLog) -> None:
    _insert_run(log, "r-old", _created_payload(FIRST_CONFIG))
    state = log.state("r-old")
    assert isinstance(state.config, RunConfig)
    assert (state.config.steps, state.config.seed, state.config.transfer, state.config.weights) == (3, 5, False, {"accuracy": 1.0})
    # Keys RunConfig gained after that version read as their defaults.
    assert (state.config.base_url, state.config.prices, state.config.scorer_budget, state.config.review) == (None, {}, None, False)
    assert state.config.stage_steps("target") == 3


def test_the_stored_config_is_the_json_object_old_readers_expect(log: EventLog) -> None:
    config = RunConfig.model_validate({"proposer": "fake", "scorer": "fake", "prices": {"fake": (1.0, 2.0)}, "steps": 4})
    run_id = log.create_run(run_created().model_copy(update={"config": config}))
    fork = log.fork(run_id, 1, config=config.model_copy(update={"seed": 9}), target_task="medqa")
    rows = log._conn.execute("SELECT type, schema_version, payload FROM events ORDER BY rowid").fetchall()
    assert [(t, v) for t, v, _ in rows] == [("run.created", 1), ("run.forked", 1)]
    created, forked = (json.loads(p) for _, _, p in rows)
    # Exactly what create_run stored when the field was a dict: config.model_dump(mode="json").
    assert created["config"] == config.model_dump(mode="json")
    assert forked["config"] == {**config.model_dump(mode="json"), "seed": 9}
    assert log.state(fork).config == config.model_copy(update={"seed": 9})
    assert isinstance(next(iter(log.events(fork, after=1))).event, RunForked)


def test_a_stored_config_run_config_rejects_names_the_run_and_seq(log: EventLog) -> None:
    _insert_run(log, "r-bad", _created_payload({**FIRST_CONFIG, "steps": "many"}))
    with pytest.raises(CorruptEvent, match="run r-bad seq 1: stored run.created payload is invalid"):
        log.state("r-bad")


def test_the_run_view_styles_every_event_type() -> None:
    from tprompt.tui.screens.run import EVENT_STYLE

    missing = [type_of(cls) for cls in EVENT_CLASSES if cls not in EVENT_STYLE]
    assert missing == []
