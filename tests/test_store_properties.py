"""Property-based round trips: events -> store -> projection, idempotency, forks."""

from __future__ import annotations

import tempfile
from pathlib import Path

from conftest import run_created
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tprompt.config import RunConfig
from tprompt.stores import (
    CandidateScored,
    EventLog,
    PromptCandidate,
    PromptTested,
    RunCompleted,
    RunFailed,
    RunPaused,
    RunResumed,
    StageCompleted,
    StageStarted,
    StepCompleted,
    StepProposed,
    TransferSelected,
    apply,
    fold,
    prompt_id_of,
)

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

stages = st.sampled_from(["source", "target"])
texts = st.text(min_size=1, max_size=30)
# Finite floats only: see the report on NaN (it does not survive a JSON round trip).
values = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
metrics = st.dictionaries(st.sampled_from(["accuracy", "ifr", "ece", "auroc"]), st.none() | values, max_size=4)
small = st.integers(min_value=0, max_value=50)
candidates = st.builds(
    lambda text, origin: PromptCandidate(prompt_id=prompt_id_of(text), text=text, origin=origin),
    texts,
    st.sampled_from(["original", "proposed", "transferred", "forked"]),
)

events = st.one_of(
    st.builds(StageStarted, stage=stages, tasks=st.lists(texts, max_size=3)),
    st.builds(StepProposed, stage=stages, step=small, candidates=st.lists(candidates, max_size=3),
              call_ids=st.lists(texts, max_size=2)),
    st.builds(
        CandidateScored, stage=stages, step=small, prompt_id=st.sampled_from(["p-a", "p-b", "p-c"]), text=texts,
        task=st.sampled_from(["t1", "t2"]), n_examples=small, metrics=metrics, objective=values,
        scorer_calls=small, rung=st.integers(0, 2),
    ),
    st.builds(StepCompleted, stage=stages, step=small, best_prompt_id=st.none() | texts,
              best_objective=st.none() | values, stop=st.booleans()),
    st.builds(StageCompleted, stage=stages, top_k=st.lists(texts, max_size=3)),
    st.builds(TransferSelected, target_task=texts, prompts=st.lists(candidates, max_size=3)),
    st.builds(PromptTested, role=st.sampled_from(["original", "best_source", "best_target"]), prompt_id=texts,
              text=texts, task=texts, n_examples=small, metrics=metrics, objective=values),
    st.builds(RunPaused, reason=texts),
    st.just(RunResumed()),
    st.just(RunCompleted()),
    st.builds(RunFailed, error=texts, retryable=st.booleans()),
)
#: A run's events after ``run.created``, cut into append batches (steps).
batches = st.lists(st.lists(events, min_size=1, max_size=6), max_size=6)


def dumps(stored) -> list[dict]:
    return [e.model_dump() for e in stored]


@SETTINGS
@given(batches=batches)
def test_live_fold_equals_fold_after_reload(batches) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.db"
        with EventLog(path) as log:
            run_id = log.create_run(run_created())
            live = list(log.events(run_id))
            for batch in batches:
                live += log.append(run_id, batch, expected_seq=len(live) + 1)
            live_state = fold(live, run_id=run_id)
            stepwise = fold([], run_id=run_id)
            for event in live:
                stepwise = apply(stepwise, event)
            assert stepwise == live_state
            assert log.state(run_id) == live_state
        with EventLog(path) as reopened:
            assert dumps(reopened.events(run_id)) == dumps(live)
            assert reopened.state(run_id) == live_state
            for seq in range(1, len(live) + 1):
                assert reopened.state(run_id, upto=seq) == fold(live[:seq], run_id=run_id)


@SETTINGS
@given(events_=st.lists(events, min_size=1, max_size=12), data=st.data())
def test_appending_the_same_events_again_leaves_one_each(events_, data) -> None:
    with EventLog() as log:
        run_id = log.create_run(run_created())
        ids = [f"e{i}" for i in range(len(events_))]
        log.append(run_id, events_, event_ids=ids)
        before = dumps(log.events(run_id))
        # Re-send any subset, in any order, in any number of batches.
        again = data.draw(st.lists(st.sampled_from(range(len(events_))), max_size=20))
        for i in again:
            assert log.append(run_id, [events_[i]], event_ids=[ids[i]]) == []
        assert dumps(log.events(run_id)) == before
        assert len(before) == len(events_) + 1


@SETTINGS
@given(parent_events=st.lists(events, min_size=1, max_size=15), own=st.lists(events, max_size=8), data=st.data())
def test_fork_history_is_parent_prefix_plus_own(parent_events, own, data) -> None:
    with EventLog() as log:
        parent = log.create_run(run_created())
        log.append(parent, parent_events)
        at = data.draw(st.integers(1, len(parent_events) + 1), label="at")
        child = log.fork(parent, at, config=RunConfig.model_validate({"seed": 7}), target_task="elsewhere")
        written = log.append(child, own, expected_seq=at + 2) if own else []
        log.append(parent, [RunPaused()])  # the parent moves on; the fork does not see it
        history = list(log.events(child))
        prefix = list(log.events(parent, upto=at))
        assert dumps(history) == dumps(prefix) + dumps(log.events(child, after=at))
        assert [e.seq for e in history] == list(range(1, at + 2 + len(own)))
        assert [e.run_id for e in history[at:]] == [child] * (1 + len(own))
        assert [e.event for e in history[at + 1 :]] == own == [e.event for e in written]
        assert log.state(child, upto=at) == log.state(parent, upto=at).model_copy(update={"run_id": child})


@SETTINGS
@given(data=st.data())
def test_forks_of_forks_match_a_model(data) -> None:
    """Random trees of appends and forks; every run's history matches a list model."""
    with EventLog() as log:
        root = log.create_run(run_created())
        model: dict[str, list[tuple[str, int, str]]] = {root: [(root, 1, "run.created")]}
        for _ in range(data.draw(st.integers(1, 12), label="ops")):
            run = data.draw(st.sampled_from(list(model)), label="run")  # creation order: stable
            history = model[run]
            if data.draw(st.booleans(), label="fork?"):
                at = data.draw(st.integers(1, len(history)), label="at")
                child = log.fork(run, at, config={}, target_task="t")
                model[child] = history[:at] + [(child, at + 1, "run.forked")]
            else:
                batch = data.draw(st.lists(events, min_size=1, max_size=3), label="batch")
                log.append(run, batch, expected_seq=len(history) + 1)
                history += [(run, len(history) + 1 + i, e.type) for i, e in enumerate(batch)]
        for run, expected in model.items():
            assert [(e.run_id, e.seq, e.type) for e in log.events(run)] == expected
            assert log.last_seq(run) == len(expected)
            assert log.state(run).last_seq == len(expected)
