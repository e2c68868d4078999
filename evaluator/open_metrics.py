"""The built-in metrics of open-ended tasks: a reply against the row's references, pattern or schema.

Each is a per-example function ``(example, answer) -> float | None``: 1.0 is
best, ``None`` when the row gives nothing to compare with (no reference, no
pattern, no schema). Where a miss has a short reason, the value comes with it
as ``(value, feedback)``: token F1 and ROUGE-L quote the reference,
``json_schema_valid`` names the missing fields (or the schema errors). The registry (:mod:`.registry`) records them with their
specs; a run names them in ``metrics`` (``--metric rouge_l``).

* ``exact_match``: the reply equals a reference after normalization (case,
  punctuation and spacing ignored), 1 or 0.
* ``token_f1``: SQuAD's token-level F1 of the reply against the best reference.
* ``contains``: a reference occurs in the reply (normalized), 1 or 0.
* ``regex_match``: the row's ``pattern`` is found in the reply, 1 or 0.
* ``json_valid``: the reply (or its one fenced code block) parses as JSON: an IFR for structured output.
* ``json_schema_valid``: it parses and validates against the row's ``schema`` (``jsonschema``).
* ``rouge_l``: ROUGE-L F-measure against the best reference, Google's ``rouge-score`` (stemmed).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from functools import lru_cache
from typing import Any

from .parsing import normalize_text
from .task_model import Example

#: Longest reference quoted in a metric's feedback.
_QUOTE = 200


def _quote(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _QUOTE else text[: _QUOTE - 1] + "…"


#: A value, or a value with its feedback (the registry records the text with the example's value).
Result = float | tuple[float, str]


def _scored(value: float, feedback: str) -> Result:
    return (value, feedback) if feedback else value

_FENCE = re.compile(r"^```[\w-]*\s*\n(.*?)\n?```\s*$", re.S)


def exact_match(example: Example, answer: str) -> float | None:
    """1.0 when the reply equals one of the row's references (normalized), else 0.0."""
    if not example.targets:
        return None
    norm = normalize_text(answer)
    return float(any(normalize_text(t) == norm for t in example.targets))


def _f1(pred: list[str], gold: list[str]) -> float:
    if not pred or not gold:
        return float(pred == gold)
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def token_f1(example: Example, answer: str) -> Result | None:
    """SQuAD-style token F1 (normalized tokens) against the best-matching reference."""
    if not example.targets:
        return None
    pred = normalize_text(answer).split()
    value, best = max((_f1(pred, normalize_text(t).split()), t) for t in example.targets)
    return _scored(value, "" if value == 1.0 else f"the reference: {_quote(best)}")


def contains(example: Example, answer: str) -> float | None:
    """1.0 when a reference occurs in the reply (normalized, on word boundaries), else 0.0."""
    if not example.targets:
        return None
    padded = f" {normalize_text(answer)} "
    return float(any(f" {normalize_text(t)} " in padded for t in example.targets if normalize_text(t)))


def regex_match(example: Example, answer: str) -> float | None:
    """1.0 when the row's ``pattern`` is found in the reply (``re.search``), else 0.0."""
    if example.pattern is None:
        return None
    return float(re.search(example.pattern, answer) is not None)


def _json_of(answer: str) -> tuple[bool, Any]:
    text = answer.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    try:
        return True, json.loads(text)
    except ValueError:
        return False, None


def json_valid(example: Example, answer: str) -> float:
    """1.0 when the reply is JSON (a reply that is one fenced code block counts by its content), else 0.0."""
    return float(_json_of(answer)[0])


@lru_cache(maxsize=256)
def _validator(schema_json: str) -> Any:
    import jsonschema  # imported on first use: most runs never validate a schema

    schema = json.loads(schema_json)
    return jsonschema.validators.validator_for(schema)(schema)


def json_schema_valid(example: Example, answer: str) -> Result | None:
    """1.0 when the reply is JSON that validates against the row's ``schema``, else 0.0."""
    if example.json_schema is None:
        return None
    ok, value = _json_of(answer)
    if not ok:
        return _scored(0.0, "the reply is not JSON")
    errors = list(_validator(json.dumps(example.json_schema, sort_keys=True)).iter_errors(value))
    if not errors:
        return 1.0
    missing = sorted({m for e in errors if e.validator == "required" for m in _missing(e)})
    said = f"missing fields: {', '.join(missing)}" if missing else "; ".join(sorted({e.message for e in errors})[:3])
    return _scored(0.0, _quote(said))


def _missing(error: Any) -> list[str]:
    """The required properties a ``required`` validation error names (absent from its instance)."""
    instance = error.instance if isinstance(error.instance, dict) else {}
    return [p for p in error.validator_value if p not in instance]


@lru_cache(maxsize=1)
def _rouge() -> Any:
    from rouge_score import rouge_scorer  # imported on first use (it pulls in nltk)

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(example: Example, answer: str) -> Result | None:
    """ROUGE-L F-measure of the reply against the best reference (``rouge-score``, Porter-stemmed)."""
    if not example.references and not example.targets:
        return None
    scorer = _rouge()
    value, best = max((scorer.score(t, answer)["rougeL"].fmeasure, t) for t in example.targets)
    return _scored(value, "" if value == 1.0 else f"the reference: {_quote(best)}")


__all__ = ("contains", "exact_match", "json_schema_valid", "json_valid", "regex_match", "rouge_l", "token_f1")
