"""The recorder: cache keys, zero repeated calls, retries, recorded failures, no secrets, concurrency."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from conftest import run_created

from tprompt.errors import ModelCallFailed
from tprompt.models import ChatRequest, OptionsRequest, Recorder, cache_key, chat_request_body, get_model
from tprompt.models.fake import FakeBackend
from tprompt.stores import EventLog, StepCompleted
from tprompt.stores.transcripts import TranscriptStore

MESSAGES = (("system", "Answer with a letter."), ("user", "Which is a mammal?\nA) shark\nB) whale"))


def key(**kw) -> str:
    return cache_key(chat_request_body(get_model("fake"), ChatRequest(messages=MESSAGES, **kw)))


def test_cache_key_covers_every_sampling_parameter():
    base = key()
    assert key() == base
    changed = [
        key(temperature=0.7), key(max_tokens=17), key(sample_index=1), key(top_p=0.9),
        key(stop=("\n",)), key(seed=3),
    ]
    assert base not in changed
    assert len(set(changed)) == len(changed)
    other_model = cache_key(chat_request_body(get_model("fake:seed=1"), ChatRequest(messages=MESSAGES)))
    assert other_model != base


def requests(n: int = 6) -> list[ChatRequest]:
    return [ChatRequest(messages=MESSAGES[:1] + (("user", f"question {i}\nA) x\nB) y"),)) for i in range(n)]


def test_second_identical_run_makes_zero_model_calls(db_path: Path):
    model = FakeBackend("fake")
    with Recorder(db_path, run_id="r-1") as first:
        a = first.chat(model, requests(), agent="scorer", seq=2)
        assert first.model_calls == 6 and first.requests == 6
    with Recorder(db_path, run_id="r-1") as second:
        b = second.chat(model, requests(), agent="scorer", seq=2)
        assert second.model_calls == 0 and second.requests == 6
    assert [r.text for r in a] == [r.text for r in b]
    assert all(r.cache_hit for r in b) and not any(r.cache_hit for r in a)
    rows = TranscriptStore(db_path).rows([("r-1", 1, None)])
    assert len(rows) == 12  # every call is a transcript row, hit or miss
    assert len({r.request_hash for r in rows}) == 6  # bodies stored once


def test_resume_after_crash_makes_no_call_twice(db_path: Path):
    model = FakeBackend("fake:delay=0.01")
    with Recorder(db_path) as before_crash:
        before_crash.chat(model, requests(4), agent="scorer")  # then the process "dies"
    with Recorder(db_path) as resumed:
        resumed.chat(model, requests(8), agent="scorer")
        assert resumed.model_calls == 4


def test_duplicates_in_one_call_are_sent_once(db_path: Path):
    with Recorder(db_path) as rec:
        results = rec.chat(FakeBackend("fake"), requests(2) * 3, agent="scorer")
    assert rec.model_calls == 2 and rec.requests == 6
    assert [r.text for r in results[:2]] * 3 == [r.text for r in results]


def test_sampling_n_candidates_gives_n_answers_and_the_same_n_again(db_path: Path):
    meta = (("user", "Propose a better instruction between <INS> and </INS>."),)
    batch = [ChatRequest(messages=meta, temperature=1.0, sample_index=i) for i in range(8)]
    with Recorder(db_path) as rec:
        first = [r.text for r in rec.chat(FakeBackend("fake"), batch, agent="proposer")]
        again = [r.text for r in rec.chat(FakeBackend("fake"), batch, agent="proposer")]
    assert len(set(first)) >= 6 and first == again


def test_option_probs_are_cached_and_sum_to_one(db_path: Path):
    reqs = [OptionsRequest(messages=MESSAGES, options=("A", "B")), OptionsRequest(messages=MESSAGES, options=("A", "B", "C"))]
    with Recorder(db_path) as rec:
        first = rec.option_probs(FakeBackend("fake"), reqs, agent="scorer")
        second = rec.option_probs(FakeBackend("fake"), reqs, agent="scorer")
    assert rec.model_calls == 2
    assert [r.probs for r in first] == [r.probs for r in second]
    assert all(abs(sum(r.probs) - 1) < 1e-9 for r in first)
    assert len(first[1].probs) == 3


def test_transient_errors_are_retried(db_path: Path):
    with Recorder(db_path, backoff_s=0.001) as rec:
        results = rec.chat(FakeBackend("fake:transient=2"), requests(2), agent="scorer")
    assert len(results) == 2 and not any(r.cache_hit for r in results)


def test_a_call_that_keeps_failing_is_recorded_and_raised(db_path: Path):
    with Recorder(db_path, run_id="r-f", backoff_s=0.001, retries=2) as rec:
        with pytest.raises(ModelCallFailed) as info:
            rec.chat(FakeBackend("fake:transient=10"), requests(3), agent="scorer", seq=4)
    rows = TranscriptStore(db_path).rows([("r-f", 1, None)])
    assert len(rows) == 3 and all(r.error and "transient" in r.error for r in rows)
    assert sorted(info.value.call_ids) == sorted(r.call_id for r in rows)
    # Failures are not cached: once the model works, the calls are made.
    with Recorder(db_path, run_id="r-f") as rec:
        rec.chat(FakeBackend("fake"), requests(3), agent="scorer")
        assert rec.model_calls == 3


def test_secrets_in_the_environment_never_reach_the_database(db_path: Path, monkeypatch):
    secret = "sk-proj-TOPSECRET-9f8e7d6c5b4a39281706"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.setenv("ANTHROPIC_API_KEY", secret + "-anthropic")
    with EventLog(db_path) as log, Recorder(log, run_id="r-s") as rec:
        log.create_run(run_created("secret"), run_id="r-s")
        rec.chat(get_model("fake"), requests(3), agent="scorer")
        rec.option_probs(get_model("fake"), [OptionsRequest(messages=MESSAGES, options=("A", "B"))], agent="scorer")

        class AuthenticationError(Exception):
            status_code = 401

        class Failing(FakeBackend):
            def generate(self, reqs):
                from tprompt.models.api import classify

                raise classify(AuthenticationError(f"Incorrect API key provided: {secret}"), "openai:gpt-x")

        with pytest.raises(ModelCallFailed):
            rec.chat(Failing("fake:seed=5"), requests(1), agent="scorer")
    data = b"".join(p.read_bytes() for p in db_path.parent.iterdir() if p.name.startswith(db_path.name))
    assert b"TOPSECRET" not in data
    assert b"Incorrect API key" in data  # the failure itself was recorded


def test_recorder_and_event_log_write_the_same_file_at_once(db_path: Path):
    with EventLog(db_path) as log:
        run = log.create_run(run_created("busy"), run_id="r-busy")
    errors: list[BaseException] = []

    def append_events():
        try:
            with EventLog(db_path) as log:
                for step in range(30):
                    log.append(run, [StepCompleted(stage="source", step=step + 1, best_prompt_id=None, best_objective=None)])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def record_calls(offset: int):
        try:
            with Recorder(db_path, run_id=run) as rec:
                for i in range(30):
                    rec.chat(FakeBackend("fake"), [ChatRequest(messages=(("user", f"q{offset}-{i}"),))], agent="scorer")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=append_events)] + [threading.Thread(target=record_calls, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with EventLog(db_path) as log:
        assert log.last_seq(run) == 31
    assert len(TranscriptStore(db_path).rows([(run, 1, None)])) == 60


def test_recorder_on_an_in_memory_event_log_shares_its_connection():
    log = EventLog(":memory:")
    log.create_run(run_created("mem"), run_id="r-mem")
    rec = Recorder(log, run_id="r-mem")
    rec.chat(FakeBackend("fake"), requests(2), agent="scorer", seq=1)
    assert len(log.transcripts.rows([("r-mem", 1, None)])) == 2
