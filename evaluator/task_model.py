"""What a task is: its rows, its answer kind, and how the kind is inferred from the rows.

The data model shared by the bundled tasks (:mod:`.tasks`) and the user's own
files (:mod:`._userfiles`); both build :class:`Task` objects from here.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from ..errors import UsageError

#: "text": an open-ended task; the scorer's whole reply is its answer, compared with
#: the rows' free-text references (or none: judged only).
AnswerKind = Literal["choice", "number", "string", "text"]
Split = Literal["train", "test"]

#: Letters used for the options of multiple-choice rows (index 0 = "A").
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

#: A string answer space is inferred when a task has at most this many distinct
#: gold strings, each seen at least twice (BBH's True/False, Yes/No, valid/invalid).
MAX_ANSWER_SPACE = 12

#: Share of a task's rows that go to train when no row names its split (task files and
#: ``task_from_records`` alike; docs/tasks.md).
TRAIN_FRACTION = 0.2


class Example(BaseModel):
    """One task row: a question, its options (multiple choice) or none, and the gold answer.

    A user's row may carry other input fields (``fields``); a row without a
    ``question`` has its fields as "name: value" lines there, for the proposer
    and the judge to read.

    An open-ended row (task kind ``text``) has no gold answer (``answer`` is
    ""), but free-text ``references`` (possibly none: judged only); ``pattern``
    (a regular expression) and ``json_schema`` are what the ``regex_match`` and
    ``json_schema_valid`` metrics check a reply against.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    question: str
    choices: tuple[str, ...] | None = None
    answer: str = ""  # the gold letter for multiple choice, else the gold string / number
    answer_text: str | None = None
    references: tuple[str, ...] = ()
    pattern: str | None = None
    json_schema: dict[str, Any] | None = None
    #: The row's input fields by name (``question`` included when it has one), for a user's template
    #: (:mod:`.template`); empty for bundled rows, whose one input is ``question``.
    fields: dict[str, str] = {}

    @property
    def targets(self) -> tuple[str, ...]:
        """What a reply is compared with: the references, else the gold answer (its text for options)."""
        if self.references:
            return self.references
        gold = self.answer_text if self.choices and self.answer_text else self.answer
        return (gold,) if gold else ()


class Task(BaseModel):
    """A task: its rows split into train and test, plus what the scorer needs to know."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str
    kind: AnswerKind
    answer_space: tuple[str, ...] | None = None
    domain: str = "custom"
    license: str = "user-provided"
    non_commercial: bool = False
    train: tuple[Example, ...]
    test: tuple[Example, ...]
    #: Rows skipped while loading (only with ``skip_bad_rows=True``), one "file:line: reason" each.
    warnings: tuple[str, ...] = ()

    def split(self, split: str) -> tuple[Example, ...]:
        """The rows of ``split`` ("train" or "test"); raises UsageError for another name."""
        if split == "train":
            return self.train
        if split == "test":
            return self.test
        raise UsageError(f"unknown split {split!r}", hint="use 'train' or 'test'")

    def sample(self, n: int, *, split: str = "train", seed: int = 0) -> list[Example]:
        """``n`` rows of ``split`` drawn without replacement, the same for the same seed.

        ``random.Random(seed).sample`` over row indices: stable across runs and
        Python versions. ``n`` larger than the split returns the whole split
        (shuffled the same way).
        """
        rows = self.split(split)
        if n < 0:
            raise UsageError(f"cannot sample {n} examples", hint="pass a positive number")
        idx = random.Random(seed).sample(range(len(rows)), min(n, len(rows)))
        return [rows[i] for i in idx]


# --- answer kind inference (bundled and user tasks alike) ----------------------

_NUMBER_RE = re.compile(r"^[-+]?\d+(?:\.\d+)?$")


def infer_kind(rows: list[Example]) -> tuple[AnswerKind, tuple[str, ...] | None]:
    """Answer kind and answer space of a set of rows.

    Rows with options -> "choice". Rows with references (or no gold answer) -> "text". All gold answers numeric -> "number". A few
    distinct gold strings, each seen at least twice -> "string" with that answer
    space (in order of first appearance). Otherwise a free "string".
    """
    if rows and rows[0].choices is not None:
        return "choice", None
    if rows and any(r.references or not r.answer for r in rows):
        return "text", None
    answers = [r.answer.strip() for r in rows]
    if answers and all(_NUMBER_RE.match(a.replace(",", "")) for a in answers):
        return "number", None
    counts: dict[str, int] = {}
    for a in answers:
        counts[a] = counts.get(a, 0) + 1
    if 2 <= len(counts) <= MAX_ANSWER_SPACE and min(counts.values()) >= 2:
        return "string", tuple(counts)
    return "string", None


# --- the split rule (bundled tasks come split; a user's rows, from a file or from Python, follow this) ---


class SplitRuleError(ValueError):
    """Rows that break the split rule; ``row`` is the index of the row at fault (None: the rows as a whole).
    Each caller says where, in its own error (a file's line, a Python row's number)."""

    def __init__(self, message: str, row: int | None = None) -> None:
        super().__init__(message)
        self.row = row


def split_rows(rows: Sequence[Example], splits: Sequence[str | None]) -> tuple[list[Example], list[Example]]:
    """A user's rows as (train, test), in their order: the one split rule for task files and ``task_from_records``.

    When every row names its split (``splits[i]`` ``"train"`` or ``"test"``) that is the split; when none does,
    rows are ordered by the sha256 of their ``id`` and the first :data:`TRAIN_FRACTION` of them (at least one)
    are train, the rest test. Stable: the same ids give the same split; adding rows moves old ones only near
    the boundary.

    Raises:
        SplitRuleError: fewer than 2 rows without splits; some rows with a split and some without; an empty split.
    """
    if all(s is None for s in splits):
        if len(rows) < 2:
            raise SplitRuleError("a task needs at least 2 rows (one train, one test)")
        ordered = sorted(rows, key=lambda r: hashlib.sha256(r.id.encode()).hexdigest())
        train_ids = {r.id for r in ordered[: max(1, round(len(ordered) * TRAIN_FRACTION))]}
        return [r for r in rows if r.id in train_ids], [r for r in rows if r.id not in train_ids]
    for i, s in enumerate(splits):
        if s is None:
            raise SplitRuleError("some rows have a 'split' and this one does not", row=i)
    train = [r for r, s in zip(rows, splits) if s == "train"]
    test = [r for r, s in zip(rows, splits) if s == "test"]
    for name, part in (("train", train), ("test", test)):
        if not part:
            raise SplitRuleError(f"the {name} split has no rows")
    return train, test


__all__ = ("LETTERS", "MAX_ANSWER_SPACE", "TRAIN_FRACTION", "AnswerKind", "Example", "Split", "SplitRuleError",
           "Task", "infer_kind", "split_rows")
