"""Answer and confidence parsing on realistic messy model outputs, per answer kind."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tprompt.evaluator import MISSING_CONFIDENCE, parse_output
from tprompt.evaluator.parsing import canonical_number, is_correct, parse_confidence
from tprompt.evaluator.tasks import Example, Task

CHOICES = ("Paris", "London", "Berlin", "Madrid")


@pytest.mark.parametrize(
    "text, answer, followed",
    [
        ("Answer: C\nConfidence: 70%", "C", True),
        ("answer: c.", "C", True),
        ("**Answer:** (B)", "B", True),
        ("ANSWER: [d]", "D", True),
        ("Answer: C) Berlin", "C", True),
        ("Answer: Paris", "A", True),  # option text instead of letter
        ("Answer: madrid!", "D", True),
        ("Answer: Option D\nConfidence: 85%", "D", True),
        ("Final answer: A. Paris", "A", True),
        ("Answer:\nB\nConfidence: 85 percent", "B", True),  # value on the next line
        ("Answer: berlin (C), confidence 60%", "C", True),
        ("Let me think. London is in the UK.\nAnswer: A\nConfidence: 90%", "A", True),
        ("Answer: X\nWait, actually:\nAnswer: B", "B", True),  # the last parseable answer line
        ("The answer is (b).", "B", False),  # recovered from free text: not the format
        ("I think it is London.\nConfidence: 0.7", "B", False),
        ("B", "B", False),
        ("I think it is probably C, but I am not sure.", "C", False),
        ("A good guess would be D or maybe B.", None, False),  # two letters: no guess
        ("(c) Berlin", "C", False),
        ("Answer: E", None, False),  # letter outside the options
        ("I am not sure.", None, False),
        ("", None, False),
    ],
)
def test_choice(text, answer, followed):
    parsed = parse_output(text, kind="choice", choices=CHOICES)
    assert parsed.answer == answer
    assert parsed.followed_format is followed


def test_choice_option_text_starting_with_a_letter_word():
    choices = ("A cat", "A dog", "Neither")
    assert parse_output("Answer: A dog", kind="choice", choices=choices).answer == "B"
    assert parse_output("Answer: A", kind="choice", choices=choices).answer == "A"
    assert parse_output("Answer: B because dogs bark", kind="choice", choices=choices).answer == "B"


@pytest.mark.parametrize(
    "text, answer, followed",
    [
        ("Answer: 18\nConfidence: 90%", "18", True),
        ("Answer: 18 kids", "18", True),
        ("Answer: $1,234.50", "1234.5", True),
        ("Answer: 1,000,000", "1000000", True),
        ("Answer: -3.50", "-3.5", True),
        ("Answer: 3 + 5 = 8 apples", "8", True),
        ("answer: eighteen", "18", True),
        ("Answer: **42**.", "42", True),
        ("6 girls x 2 = 12 boys; 6 + 12 = 18\n#### 18", "18", False),
        ("There are 6 girls and 12 boys, so 18 kids in total.", "18", False),
        ("The answer is $5.", "5", False),
        ("Answer: none of these", None, False),
        ("I cannot solve this.", None, False),
    ],
)
def test_number(text, answer, followed):
    parsed = parse_output(text, kind="number")
    assert parsed.answer == answer
    assert parsed.followed_format is followed


@pytest.mark.parametrize(
    "text, space, answer, followed",
    [
        ("Answer: true.", ("True", "False"), "True", True),
        ("Answer: FALSE\nConfidence: 55%", ("True", "False"), "False", True),
        ("Answer: Yes, he did.", ("Yes", "No"), "Yes", True),
        ("answer: no", ("Yes", "No"), "No", True),
        ("Answer: invalid", ("valid", "invalid"), "invalid", True),
        ("Answer: The argument is valid", ("valid", "invalid"), "valid", True),
        ("Answer: It is not valid", ("valid", "invalid"), None, False),  # negation: don't guess
        ("Answer: maybe", ("Yes", "No"), None, False),
        ("False", ("True", "False"), "False", False),
        ("The answer is Yes.", ("Yes", "No"), "Yes", False),
    ],
)
def test_string_with_answer_space(text, space, answer, followed):
    parsed = parse_output(text, kind="string", answer_space=space)
    assert parsed.answer == answer
    assert parsed.followed_format is followed


def test_free_string_is_normalized():
    parsed = parse_output("Answer: The Eiffel Tower.", kind="string")
    assert parsed.answer == "the eiffel tower" and parsed.followed_format


@pytest.mark.parametrize(
    "text, value",
    [
        ("Confidence: 85%", 0.85),
        ("confidence: 0.85", 0.85),
        ("Confidence: 85 percent", 0.85),
        ("Confidence level: 85", 0.85),
        ("**Confidence:** 70 %", 0.70),
        ("Confidence: 85/100", 0.85),
        ("Confidence: 1", 1.0),
        ("Confidence: 150%", 1.0),  # clipped
        ("Confidence: high", 0.85),
        ("Answer: B", None),
    ],
)
def test_confidence(text, value):
    got = parse_confidence(text)
    assert got == (pytest.approx(value) if value is not None else None)


def test_missing_confidence_is_documented_constant():
    assert 0 < MISSING_CONFIDENCE < 1
    assert parse_output("Answer: B", kind="choice", choices=CHOICES).confidence is None


def test_canonical_number():
    assert canonical_number("1,234") == "1234"
    assert canonical_number("0.50") == "0.5"
    assert canonical_number("twenty one") == "21"
    assert canonical_number("nothing") is None


def test_is_correct_compares_numbers_by_value_and_strings_normalized():
    num = Task(name="t", description="", kind="number", train=(), test=())
    ex = Example(id="1", question="q", answer="1234")
    assert is_correct("1234", ex, num)
    assert is_correct(parse_output("Answer: 1,234.00", kind="number").answer, ex, num)
    assert not is_correct("1235", ex, num)
    assert not is_correct(None, ex, num)
    free = Task(name="t", description="", kind="string", train=(), test=())
    assert is_correct("paris", Example(id="2", question="q", answer="Paris."), free)


# --- round trips on random well-formed outputs -----------------------------------


@given(st.integers(2, 10).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))),
       st.integers(0, 100), st.sampled_from(["Answer: {l}", "answer: ({l})", "**Answer:** {l}.", "Answer: {l}) opt"]))
def test_choice_round_trip(n_and_index, percent, template):
    n, index = n_and_index
    choices = tuple(f"option number {i}" for i in range(n))
    letter = "ABCDEFGHIJ"[index]
    text = template.format(l=letter) + f"\nConfidence: {percent}%"
    parsed = parse_output(text, kind="choice", choices=choices)
    assert parsed.answer == letter and parsed.followed_format
    assert parsed.confidence == pytest.approx(percent / 100)


@given(st.integers(-10**9, 10**9), st.sampled_from(["{:,}", "{}", "${:,}", "{} apples", "{:,}.00"]))
def test_number_round_trip(value, fmt):
    if fmt.startswith("$") and value < 0:
        fmt = "-$" + f"{abs(value):,}"
        text = f"Answer: {fmt}"
    else:
        text = "Answer: " + fmt.format(value)
    parsed = parse_output(text, kind="number")
    assert parsed.answer == str(value) and parsed.followed_format
