"""The LLM judge's rubric, declared as data: named criteria, a scale, an instruction and a version.

A :class:`Rubric` sits in the run config (``RunConfig.rubric``), so it is
stored whole in ``run.created`` and a resumed, replayed or rescored run judges
by the same one. The judge's requests name it by :attr:`Rubric.ref` in their
``templates``, so it is part of the cache key: changing a criterion means a
new rubric (bump ``version``), and the old rubric's cached judgements stay
valid for the old one.

It sits below the stores (like :mod:`tprompt.config`, which holds it) and
imports nothing of tprompt's. The judge's metric names (``judge_<criterion>``) are made here.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: How a criterion is named: its metric is ``judge_<name>``.
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")

DEFAULT_INSTRUCTION = (
    "You are a strict, fair judge of answers to questions. Judge only the answer shown, against the question, "
    "the instruction it was written under and, when one is given, the reference answer."
)


class Criterion(BaseModel):
    """One thing the judge scores.

    Attributes:
        name: lower-case identifier; the metric is ``judge_<name>``.
        description: what the judge is to look for (shown to it verbatim).
        needs_reference: judged only for questions that have a reference answer.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str
    needs_reference: bool = False

    @model_validator(mode="after")
    def _check(self) -> Criterion:
        if not _NAME.match(self.name):
            raise ValueError(f"rubric criterion name {self.name!r}: use lower-case letters, digits and _ "
                             "(it becomes the metric judge_<name>)")
        if not self.description.strip():
            raise ValueError(f"rubric criterion {self.name!r} has an empty description")
        return self


DEFAULT_CRITERIA: tuple[Criterion, ...] = (
    Criterion(name="relevance", description="the answer addresses the question that was asked"),
    Criterion(name="coherence", description="the answer is logically consistent and well organized"),
    Criterion(name="fluency", description="the answer is grammatical, clear and readable"),
    Criterion(name="faithfulness", description="the answer agrees with the reference answer", needs_reference=True),
)


class Rubric(BaseModel):
    """What the judge scores, on which scale, told how.

    ``scale`` is the (lowest, highest) whole-number score; a score ``s``
    becomes the metric value ``(s - low) / (high - low)`` in [0, 1].
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "default"
    version: int = Field(1, ge=1)
    criteria: tuple[Criterion, ...] = DEFAULT_CRITERIA
    scale: tuple[int, int] = (1, 5)
    instruction: str = DEFAULT_INSTRUCTION

    @model_validator(mode="after")
    def _check(self) -> Rubric:
        if not self.criteria:
            raise ValueError("the rubric has no criteria: give at least one [[rubric.criteria]] with a name "
                             "and a description")
        names = [c.name for c in self.criteria]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise ValueError(f"the rubric names criterion {dup!r} twice")
        low, high = self.scale
        if not high > low:
            raise ValueError(f"rubric scale {list(self.scale)}: the highest score must be above the lowest")
        if not self.instruction.strip():
            raise ValueError("the rubric's instruction is empty")
        if not _NAME.match(self.name.replace("-", "_")):
            raise ValueError(f"rubric name {self.name!r}: use lower-case letters, digits, - and _")
        return self

    @property
    def ref(self) -> str:
        """``rubric.<name>@vN``: how a judge request names the rubric (transcripts, cache key)."""
        return f"rubric.{self.name}@v{self.version}"

    def normalized(self, score: float) -> float:
        """``score`` on the rubric's scale as a value in [0, 1]."""
        low, high = self.scale
        return (score - low) / (high - low)


#: The prefix of the LLM judge's metrics: ``judge_<criterion>``.
JUDGE_PREFIX = "judge_"


def judge_metric(criterion: str) -> str:
    """The metric a criterion's judgements make: ``judge_<criterion>``."""
    return JUDGE_PREFIX + criterion


def is_judge_metric(name: str) -> bool:
    """True for the name of an LLM-judge metric: ``judge_<criterion>``."""
    rest = name.removeprefix(JUDGE_PREFIX)
    return name.startswith(JUDGE_PREFIX) and bool(rest) and rest.replace("_", "").isalnum() and rest.islower()


__all__ = ("DEFAULT_CRITERIA", "DEFAULT_INSTRUCTION", "JUDGE_PREFIX", "Criterion", "Rubric", "is_judge_metric",
           "judge_metric")
