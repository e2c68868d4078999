"""Opening a long run folds it once (issue 12, item 9): the follower's state and its replay
checkpoints equal the event-by-event projection, and reading is not one state copy per event."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_graph import run_in_process

from tprompt.stores import apply, projection
from tprompt.tui.data import RunFollower


def test_follower_matches_event_by_event_projection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log, run_id = run_in_process(tmp_path / "f.db", steps=25, candidates=2, examples=2, test_examples=2)
    events = list(log.events(run_id))
    assert len(events) > 2 * 64
    reference = [None]
    state = projection.RunState(run_id=run_id)
    for se in events:
        state = apply(state, se)
        reference.append(state)
    monkeypatch.setattr(RunFollower, "CHECKPOINT_EVERY", 64)
    follower = RunFollower(log, run_id)
    copies = {"n": 0}
    real_builder = projection._Builder

    class Counting(real_builder):  # type: ignore[misc, valid-type]
        def __init__(self, *a: object) -> None:
            copies["n"] += 1
            super().__init__(*a)

    monkeypatch.setattr(projection, "_Builder", Counting)
    follower.poll()  # the whole run at once
    assert copies["n"] <= len(events) // 64 + 2, "one state copy per event: quadratic in the run's length"
    assert follower.state == reference[-1]
    for seq, checkpoint in follower._checkpoints.items():
        assert seq % 64 == 0 and checkpoint == reference[seq]
    for seq in (1, 63, 64, 65, 150, len(events)):
        assert follower.state_at(seq) == reference[seq]
    # Growing a little at a time gives the same.
    part = RunFollower(log, run_id)
    monkeypatch.setattr(log, "events", _prefix_reader(log.events, 100))
    part.poll()
    monkeypatch.undo()
    monkeypatch.setattr(RunFollower, "CHECKPOINT_EVERY", 64)
    part.poll()
    assert part.state == reference[-1] and part._checkpoints.keys() == follower._checkpoints.keys()


def _prefix_reader(events, n):  # type: ignore[no-untyped-def]
    def read(run_id, after=0, **kw):  # type: ignore[no-untyped-def]
        return [se for se in events(run_id, after=after, **kw) if se.seq <= n]

    return read
