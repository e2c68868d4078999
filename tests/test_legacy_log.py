"""A log written by tprompt b94469e folds with today's code (``fixtures/log_b94469e.json``).

At b94469e one class held training and test answers (``candidate.answered``, ``split``
telling them apart), and one their judgements (``candidate.judged``). They are now
four classes; the stored version-1 rows are upcast when read. The fixture is that
version's run, as written, with what that version's fold made of it at every seq.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tprompt.graph import Runner
from tprompt.stores import EventLog
from tprompt.stores.events import (
    CandidateAnswered,
    CandidateJudged,
    TestAnswered,
    TestJudged,
)
from tprompt.stores.log import decode_row
from tprompt.stores.projection import fold

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "log_b94469e.json").read_text())
ROWS: list[list[Any]] = FIXTURE["rows"]


def _holds(new: Any, old: Any) -> bool:
    """``new`` says all ``old`` said: equal, but for keys added since (a new RunConfig key, a new event field)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return set(old) <= set(new) and all(_holds(new[k], v) for k, v in old.items())
    return bool(new == old)


def _decoded() -> list[Any]:
    return [decode_row(*row) for row in ROWS]


def test_fixture_holds_both_splits_in_one_class() -> None:
    """What the test is about: the old rows are version 1 and mix the splits in one stored type."""
    splits = {(r[3], json.loads(r[5])["split"]) for r in ROWS if r[3] in ("candidate.answered", "candidate.judged")}
    assert splits == {("candidate.answered", "train"), ("candidate.answered", "test"),
                      ("candidate.judged", "train"), ("candidate.judged", "test")}
    assert {r[4] for r in ROWS} == {1}


def test_old_rows_upcast_to_one_class_per_fact() -> None:
    for row, se in zip(ROWS, _decoded()):
        old = json.loads(row[5])
        if row[3] not in ("candidate.answered", "candidate.judged"):
            new = se.event.model_dump(mode="json")
            assert _holds(new, old)  # untouched; fields added since read as their defaults
            assert all(new[k] == type(se.event).model_fields[k].get_default(call_default_factory=True)
                       for k in set(new) - set(old))
            continue
        assert se.schema_version == 1  # the envelope still says what is on disk
        new = se.event.model_dump(mode="json")
        if old["split"] == "test":
            assert type(se.event) is (TestAnswered if row[3] == "candidate.answered" else TestJudged)
            assert new["role"] == old["role"] and old["role"] is not None
            dropped = {"stage", "step", "rung", "type"}  # a test answer set never had a step (they were None, 0)
            assert (old["stage"], old["step"], old["rung"]) == (None, None, 0)
        else:
            assert type(se.event) is (CandidateAnswered if row[3] == "candidate.answered" else CandidateJudged)
            assert old["role"] is None
            dropped = {"role"}
        assert _holds({k: v for k, v in new.items() if k not in dropped},
                      {k: v for k, v in old.items() if k not in dropped})


def test_fold_of_old_log_is_what_the_old_fold_made() -> None:
    state = fold(_decoded(), run_id=ROWS[0][0])
    assert _holds(state.model_dump(mode="json"), FIXTURE["final_state"])


@pytest.mark.parametrize("seq", range(1, len(ROWS) + 1))
def test_fold_at_every_seq(seq: int) -> None:
    """Replay: the state at each seq says what it said (answers awaiting evaluation included)."""
    state = fold(_decoded()[:seq], run_id=ROWS[0][0])
    old = FIXTURE["states"][str(seq)]
    assert (state.status, state.stage, state.step, state.in_flight) == (
        old["status"], old["stage"], old["step"], old["in_flight"])
    assert (len(state.scores), sorted(state.tested), state.judgements) == (
        old["n_scores"], old["tested"], old["judgements"])
    assert [(a.prompt_id, a.task, a.split, len(a.answers)) for a in state.unevaluated] == [
        (a["prompt_id"], a["task"], a["split"], len(a["answers"])) for a in old["unevaluated"]]
    assert [(j.prompt_id, j.split, len(j.judgements)) for j in state.judged] == [
        (j["prompt_id"], j["split"], len(j["judgements"])) for j in old["judged"]]


def test_old_log_cut_after_a_test_answer_resumes_to_the_same_end(tmp_path: Path) -> None:
    """A run stopped by b94469e with a test answer set unevaluated finishes under today's code as it did then."""
    cut = next(i for i, r in enumerate(ROWS) if r[3] == "candidate.answered" and json.loads(r[5])["split"] == "test")
    with EventLog(tmp_path / "legacy.db") as log:
        run_id = ROWS[0][0]
        log._conn.execute(
            "INSERT INTO runs (run_id, parent_run_id, parent_seq, status, name, created_at, updated_at)"
            " VALUES (?, NULL, NULL, 'running', 'legacy', '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00')",
            (run_id,),
        )
        log._conn.executemany(
            "INSERT INTO events (run_id, seq, event_id, type, schema_version, payload, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)", [tuple(r) for r in ROWS[: cut + 1]])
        assert isinstance(log.state(run_id).unevaluated[0], TestAnswered)
        final = Runner(log, run_id).run()
        assert final.status == "completed"
        assert {role: t.objective for role, t in final.tested.items()} == {
            role: t["objective"] for role, t in FIXTURE["final_state"]["tested"].items()}
        new_types = [se.type for se in log.events(run_id, after=cut + 1)]
        assert "candidate.answered" not in new_types and "test.answered" in new_types
