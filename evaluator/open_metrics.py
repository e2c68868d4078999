"""The built-in metrics of open-ended tasks: a reply against the row's references, pattern or schema.

Each is a per-example function ``(example, answer) -> float | None``: 1.0 is
best, ``None`` when the row gives nothing to compare with (no reference, no
pattern, no schema). The registry (:mod:`.registry`) records them with their
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


def token_f1(example: Example, answer: str) -> float | None:
    """SQuAD-style token F1 (normalized tokens) against the best-matching reference."""
    if not example.targets:
        return None
    pred = normalize_text(answer).split()
    return max(_f1(pred, normalize_text(t).split()) for t in example.targets)


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
    import jsonschema  # type: ignore[import-untyped]  # imported on first use: most runs never validate a schema

    schema = json.loads(schema_json)
    return jsonschema.validators.validator_for(schema)(schema)


def json_schema_valid(example: Example, answer: str) -> float | None:
    """1.0 when the reply is JSON that validates against the row's ``schema``, else 0.0."""
    if example.json_schema is None:
        return None
    ok, value = _json_of(answer)
    if not ok:
        return 0.0
    return float(_validator(json.dumps(example.json_schema, sort_keys=True)).is_valid(value))


@lru_cache(maxsize=1)
def _rouge() -> Any:
    from rouge_score import rouge_scorer  # type: ignore[import-untyped]  # imported on first use (it pulls in nltk)

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(example: Example, answer: str) -> float | None:
    """ROUGE-L F-measure of the reply against the best reference (``rouge-score``, Porter-stemmed)."""
    if not example.references and not example.targets:
        return None
    scorer = _rouge()
    return max(scorer.score(t, answer)["rougeL"].fmeasure for t in example.targets)


__all__ = ("contains", "exact_match", "json_schema_valid", "json_valid", "regex_match", "rouge_l", "token_f1")
