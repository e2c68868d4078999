"""Reading answers and confidences out of messy model output.

The scorer demands two lines::

    Answer: <letter | number | answer>
    Confidence: <0-100>%

``parse_output`` finds them whatever the case, markdown or punctuation around
them, and recovers the answer from free text ("The answer is (b)", "#### 18")
when the format was not followed. Rules:

* ``followed_format`` is True when an "Answer:" line is present and its value
  parses under the task's answer kind. A missing confidence line does not break
  the format (the confidence then is :data:`MISSING_CONFIDENCE`).
* An answer recovered from free text counts (correct or wrong) but
  ``followed_format`` is False.
* An answer that cannot be parsed at all is scored as wrong with confidence 0
  (see ``scoring.py``): it is a failure the model was confident about nothing.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .task_model import LETTERS, AnswerKind, Example, Task

#: Confidence used when an answer parses but no confidence was stated.
MISSING_CONFIDENCE = 0.5

_ANSWER_LINE = re.compile(
    r"(?im)^[\s>*_#`\-]*(?:the\s+)?(?:final\s+|correct\s+)?answer\s*(?:is)?\s*[*_`]*\s*[:：=]\s*[*_`]*\s*(.*?)\s*$"
)
_HASH_LINE = re.compile(r"(?m)^\s*####\s*(.+?)\s*$")
_ANSWER_IS = re.compile(r"(?i)\b(?:final\s+|correct\s+)?answer\s+(?:is|would\s+be|:)\s*[:\-]?\s*([^\n]+)")
_CONF = re.compile(
    r"(?i)confidence(?:\s+level)?\s*(?:is|of|[:：=])?\s*[*_`]*\s*(?:about\s+|around\s+|~)?"
    r"(\d+(?:\.\d+)?|\.\d+)\s*(%|percent|per\s*cent|/\s*100|out\s+of\s+100)?"
)
_CONF_WORD = re.compile(r"(?i)confidence(?:\s+level)?\s*(?:is|[:：=])?\s*[*_`]*\s*(very\s+high|very\s+low|high|medium|moderate|low)\b")
_CONF_WORDS = {"very high": 0.95, "high": 0.85, "medium": 0.6, "moderate": 0.6, "low": 0.3, "very low": 0.1}

_NUMBER = re.compile(r"[-−]?\$?\s?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-−]?\.\d+")
_WORD_NUMBERS = {
    w: i
    for i, w in enumerate(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]
    )
}
_WORD_NUMBERS.update({"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90})


@dataclass(frozen=True, slots=True)
class ParsedOutput:
    """What was read from one model output."""

    answer: str | None  # normalized: a letter, a canonical number, an answer-space string, or free text
    confidence: float | None  # in [0, 1], None when no confidence was stated
    followed_format: bool


def _clean(value: str) -> str:
    """Strip markdown and surrounding punctuation from an answer value."""
    value = value.strip().strip("*_`\"'“”‘’").strip()
    value = re.sub(r"^\s*(?:option|choice)\s+", "", value, flags=re.I)
    return value.rstrip(" .;:!,").strip()


def normalize_text(text: str) -> str:
    """Case-, punctuation- and space-insensitive form of a text."""
    text = text.lower().replace("’", "'")
    text = re.sub(r"[^\w\s']", " ", text)
    return " ".join(text.split())


# --- per-kind value parsers -----------------------------------------------------


def parse_choice(value: str, choices: tuple[str, ...]) -> str | None:
    """The option letter meant by ``value``: "B", "(b)", "b)", "B. Paris", "Option B", or the option text."""
    letters = LETTERS[: len(choices)]
    v = _clean(value)
    if not v:
        return None
    norm = normalize_text(v)
    texts = [normalize_text(c) for c in choices]
    # A bare letter is a letter, even when an option reads "c" (the speed of light).
    m = re.fullmatch(r"[\(\[]?([A-Za-z])[\)\].]?", v)
    if m and m.group(1).upper() in letters:
        return m.group(1).upper()
    # The option text next, so an option like "A cat" is not read as letter A; compared
    # exactly, then ignoring case, then ignoring punctuation ("-1" vs "1" must stay apart).
    for form in (lambda t: " ".join(t.split()), lambda t: " ".join(t.casefold().split()), normalize_text):
        forms = [form(_clean(c)) for c in choices]
        if forms.count(form(v)) == 1:
            return letters[forms.index(form(v))]
    # A bracketed, punctuated or bare letter: "(b)", "B)", "B. Paris", "C: ...", "b".
    m = re.match(r"^[\(\[]?([A-Za-z])(?:[\)\]]|[.:,]|\s+[-–]\s|$)", v)
    if m and m.group(1).upper() in letters:
        return m.group(1).upper()
    # A capital letter then words: "C Paris", "B because ..."; but "A cat" may be an option text.
    m = re.match(r"^([A-Z])\s+(.+)$", v)
    if m and m.group(1) in letters:
        rest = normalize_text(m.group(2))
        own = texts[letters.index(m.group(1))]
        other = _by_text(norm, texts, letters)
        if rest and (own.startswith(rest) or rest.startswith(own) or other is None):
            return m.group(1)
        return other
    m = re.search(r"[\(\[]([A-Za-z])[\)\]]", v)
    if m and m.group(1).upper() in letters:
        return m.group(1).upper()
    m = re.search(r"(?i)\b(?:option|choice|letter)\s+\(?([A-Za-z])\b", v)
    if m and m.group(1).upper() in letters:
        return m.group(1).upper()
    return _by_text(norm, texts, letters)


def _by_text(norm: str, texts: list[str], letters: str) -> str | None:
    """The one option whose text appears in ``norm`` (the longest if nested), else None."""
    hits = [i for i, t in enumerate(texts) if t and re.search(rf"(?<!\w){re.escape(t)}(?!\w)", norm)]
    if not hits:
        return None
    hits.sort(key=lambda i: -len(texts[i]))
    # "not valid" contains "valid": prefer the longest, but refuse two unrelated hits.
    best = hits[0]
    if all(texts[i] in texts[best] for i in hits[1:]):
        return letters[best]
    return None


def canonical_number(text: str) -> str | None:
    """"$1,234.50" -> "1234.5", "18 kids" -> "18", "-3" -> "-3", "five" -> "5"; the first number in ``text``."""
    m = _NUMBER.search(text)
    if m:
        raw = m.group(0).replace("$", "").replace(",", "").replace(" ", "").replace("−", "-")
        try:
            value = float(raw)
        except ValueError:
            return None
        if not math.isfinite(value):
            return None
        if value == int(value):
            return str(int(value))
        return f"{value:.10f}".rstrip("0").rstrip(".")
    words = normalize_text(text).split()
    for i, w in enumerate(words):
        if w in _WORD_NUMBERS:
            n = _WORD_NUMBERS[w]
            if n >= 20 and i + 1 < len(words) and words[i + 1] in _WORD_NUMBERS and _WORD_NUMBERS[words[i + 1]] < 10:
                n += _WORD_NUMBERS[words[i + 1]]
            return str(n)
    return None


def parse_string(value: str, answer_space: tuple[str, ...] | None) -> str | None:
    """An answer-space string ("true." -> "True", "Yes, he did" -> "Yes") or, without a space, normalized text."""
    v = _clean(value)
    if not v:
        return None
    norm = normalize_text(v)
    if answer_space is None:
        return norm or None
    space = [normalize_text(s) for s in answer_space]
    if norm in space:
        return answer_space[space.index(norm)]
    first = norm.split()[0] if norm else ""
    if first in space:
        return answer_space[space.index(first)]
    hits = [i for i, s in enumerate(space) if re.search(rf"(?<!\w){re.escape(s)}(?!\w)", norm)]
    if len(hits) == 1 and not re.search(rf"\bnot {re.escape(space[hits[0]])}(?!\w)", norm):
        return answer_space[hits[0]]
    return None


def parse_value(value: str, *, kind: AnswerKind, choices: tuple[str, ...] | None = None,
                answer_space: tuple[str, ...] | None = None) -> str | None:
    """Normalize one answer value under ``kind`` (None when it cannot be read)."""
    if kind == "choice":
        return parse_choice(value, choices or ())
    if kind == "number":
        # "3 + 5 = 8": the result after the last "="; otherwise the first number ("18 kids").
        return canonical_number(_clean(value.rsplit("=", 1)[-1]))
    return parse_string(value, answer_space)


# --- whole outputs ------------------------------------------------------------------


def parse_confidence(text: str) -> float | None:
    """The stated confidence in [0, 1]: "85%", "0.85", "85 percent", "85/100", "high"; None if absent.

    A bare number above 1 is a percentage; at most 1 it is a probability.
    """
    m = _CONF.search(text)
    if m:
        value = float(m.group(1))
        if m.group(2) or value > 1:
            value /= 100
        return min(max(value, 0.0), 1.0)
    m = _CONF_WORD.search(text)
    if m:
        return _CONF_WORDS[" ".join(m.group(1).lower().split())]
    return None


def _strip_confidence(value: str) -> str:
    """Cut a confidence written on the answer line ("B, confidence 80%")."""
    return re.split(r"(?i)[\s,;(]*\bconfidence\b(?:\s+level)?\s*(?:is|of|[:=])?\s*[*_`]*\s*(?=\d|\.\d)", value, maxsplit=1)[0]


def parse_output(text: str, *, kind: AnswerKind, choices: tuple[str, ...] | None = None,
                 answer_space: tuple[str, ...] | None = None) -> ParsedOutput:
    """Read the answer and confidence out of a model output (see the module doc for the rules).

    On an open-ended task (kind ``text``) the whole reply is the answer, always in format, with no confidence.
    """
    text = text or ""
    if kind == "text":
        return ParsedOutput(text.strip(), None, True)
    confidence = parse_confidence(text)

    def read(value: str) -> str | None:
        return parse_value(_strip_confidence(value), kind=kind, choices=choices, answer_space=answer_space)

    # The demanded line: the last "Answer:" line that parses (models restate after reasoning).
    for m in reversed(list(_ANSWER_LINE.finditer(text))):
        value = m.group(1)
        if not value.strip():  # "Answer:\nB" -- the value on the next line
            rest = text[m.end():].strip().splitlines()
            value = rest[0] if rest else ""
        parsed = read(value)
        if parsed is not None:
            return ParsedOutput(parsed, confidence, True)
    # Recovery from free text: "#### 18", "the answer is (b)", then the bare output.
    explicit = [m.group(1) for m in _HASH_LINE.finditer(text)]
    explicit += [m.group(1) for m in _ANSWER_IS.finditer(text)]
    for value in reversed(explicit):
        parsed = read(value)
        if parsed is not None:
            return ParsedOutput(parsed, confidence, False)
    body = re.sub(r"(?im)^.*confidence.*$", "", text).strip()
    parsed = _recover(body, kind=kind, choices=choices, answer_space=answer_space)
    if parsed is not None:
        return ParsedOutput(parsed, confidence, False)
    return ParsedOutput(None, confidence, False)


def parse_reply(text: str, *, kind: AnswerKind, choices: tuple[str, ...] | None = None,
                answer_space: tuple[str, ...] | None = None) -> ParsedOutput:
    """Read the answer out of a free reply to the user's own template (which demands no "Answer:" line).

    The answer is read as :func:`parse_output` reads it (an "Answer:" line,
    else recovered from the text). ``followed_format`` (IFR) is True when the
    reply's first non-empty line is the answer itself (a bare label, letter,
    option text or number, markdown and final punctuation aside), or when an
    "Answer:" line holds it: the reply is usable as it stands. The confidence
    is a stated one ("Confidence: 80%") if the reply has it, else None (the
    scorer then uses :data:`MISSING_CONFIDENCE`). On an open-ended task the
    whole reply is the answer, always in format.
    """
    parsed = parse_output(text, kind=kind, choices=choices, answer_space=answer_space)
    if kind == "text" or parsed.answer is None or parsed.followed_format:
        return parsed
    lines = [ln for ln in (text or "").splitlines() if ln.strip()]
    first = _clean(lines[0]) if lines else ""
    bare = parse_value(first, kind=kind, choices=choices, answer_space=answer_space)
    if kind == "choice":
        # "B", "(b)", "B) Paris", "B. Paris", or the option text alone
        opts = choices or ()
        m = re.fullmatch(r"[\(\[]?([A-Za-z])(?:[\)\].:]\s*(.*)|)", first)
        lettered = bool(m) and m.group(1).upper() in LETTERS[: len(opts)] and (  # type: ignore[union-attr]
            not m.group(2) or normalize_text(m.group(2)) == normalize_text(opts[LETTERS.index(m.group(1).upper())]))  # type: ignore[union-attr]
        exact = lettered or any(normalize_text(first) == normalize_text(c) for c in opts)
    elif kind == "number":
        exact = canonical_number(first) is not None and bool(re.fullmatch(r"[-−$\d.,\s]+", first))
    else:
        exact = normalize_text(first) == normalize_text(bare or "")
    return ParsedOutput(parsed.answer, parsed.confidence, bool(exact and bare == parsed.answer))


def _recover(body: str, *, kind: AnswerKind, choices: tuple[str, ...] | None,
             answer_space: tuple[str, ...] | None) -> str | None:
    """An answer from output without any answer marker; conservative, to not invent answers."""
    lines = [ln.strip() for ln in body.splitlines() if ln.strip()]
    if not lines:
        return None
    if kind == "number":
        nums = _NUMBER.findall(body)
        return canonical_number(nums[-1]) if nums else canonical_number(lines[-1])
    if kind == "choice":
        choices = choices or ()
        letters = LETTERS[: len(choices)]
        for line in (lines[-1], lines[0]):
            m = re.fullmatch(r"[\(\[]?([A-Za-z])[\)\].]?", _clean(line))
            if m and m.group(1).upper() in letters:
                return m.group(1).upper()
            m = re.match(r"^[\(\[]([A-Za-z])[\)\]]", line)
            if m and m.group(1).upper() in letters:
                return m.group(1).upper()
        # "I think it is probably C": one lone capital letter among the options' letters
        # ("I" as a pronoun and "A" as an article don't count).
        lone = {
            m.group(1)
            for m in re.finditer(r"(?<![\w'])([A-Z])(?![\w'])", body)
            if m.group(1) in letters
            and not (m.group(1) in "AI" and re.match(r"\s+[a-z]", body[m.end():]))
        }
        if len(lone) == 1:
            return lone.pop()
        return _by_text(normalize_text(body), [normalize_text(c) for c in choices], letters)
    for line in (lines[-1], lines[0]):
        parsed = parse_string(line, answer_space)
        if parsed is not None and (answer_space is not None or len(lines) == 1):
            return parsed
    return None


def is_correct(parsed: str | None, example: Example, task: Task) -> bool:
    """Whether a parsed answer equals the gold answer (numbers by value, strings normalized)."""
    if parsed is None:
        return False
    gold = gold_answer(example, task)
    if gold is None:
        return False
    if task.kind == "text":  # equal to one of the references after normalization (the exact_match metric)
        return any(normalize_text(parsed) == normalize_text(t) for t in example.targets)
    if task.kind == "number":
        try:
            return abs(float(parsed) - float(gold)) <= 1e-6 * max(1.0, abs(float(gold)))
        except ValueError:
            return False
    if task.kind == "string" and task.answer_space is None:
        return normalize_text(parsed) == normalize_text(gold)
    return parsed == gold


def gold_answer(example: Example, task: Task) -> str | None:
    """The gold answer normalized the way parsed answers are."""
    if task.kind == "choice":
        return example.answer.strip().upper()
    if task.kind == "text":  # an open-ended row: its first reference (None: judged only)
        return example.targets[0] if example.targets else None
    return parse_value(example.answer, kind=task.kind, choices=example.choices, answer_space=task.answer_space)
