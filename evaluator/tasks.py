"""Tasks: rows, answer kinds, splits, and the bundled benchmark slices.

A task is a named set of question rows with a gold answer each, split into
``train`` (what the optimizer sees) and ``test`` (held out). Bundled tasks live
in ``evaluator/data/`` (see its README.md and MANIFEST.json for sources and
licenses); users bring their own with a path (see :mod:`._userfiles` and
docs/tasks.md).
"""

from __future__ import annotations

import json
import random
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from ..errors import UnknownTask, UsageError

AnswerKind = Literal["choice", "number", "string"]
Split = Literal["train", "test"]

#: Letters used for the options of multiple-choice rows (index 0 = "A").
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

#: A string answer space is inferred when a task has at most this many distinct
#: gold strings, each seen at least twice (BBH's True/False, Yes/No, valid/invalid).
MAX_ANSWER_SPACE = 12


class Example(BaseModel):
    """One task row: a question, its options (multiple choice) or none, and the gold answer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    question: str
    choices: tuple[str, ...] | None = None
    answer: str  # the gold letter for multiple choice, else the gold string / number
    answer_text: str | None = None


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


class TaskInfo(BaseModel):
    """A line of `tprompt tasks`: what a bundled task is, without its rows."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    kind: AnswerKind
    answer_space: tuple[str, ...] | None
    n_train: int
    n_test: int
    domain: str
    license: str
    non_commercial: bool
    description: str


# --- answer kind inference (bundled and user tasks alike) ----------------------

_NUMBER_RE = re.compile(r"^[-+]?\d+(?:\.\d+)?$")


def infer_kind(rows: list[Example]) -> tuple[AnswerKind, tuple[str, ...] | None]:
    """Answer kind and answer space of a set of rows.

    Rows with options -> "choice". All gold answers numeric -> "number". A few
    distinct gold strings, each seen at least twice -> "string" with that answer
    space (in order of first appearance). Otherwise a free "string".
    """
    if rows and rows[0].choices is not None:
        return "choice", None
    answers = [r.answer.strip() for r in rows]
    if answers and all(_NUMBER_RE.match(a.replace(",", "")) for a in answers):
        return "number", None
    counts: dict[str, int] = {}
    for a in answers:
        counts[a] = counts.get(a, 0) + 1
    if 2 <= len(counts) <= MAX_ANSWER_SPACE and min(counts.values()) >= 2:
        return "string", tuple(counts)
    return "string", None


# --- bundled tasks ------------------------------------------------------------

_MMLU_DOMAINS = {
    "anatomy": "medical",
    "clinical_knowledge": "medical",
    "college_medicine": "medical",
    "medical_genetics": "medical",
    "professional_medicine": "medical",
    "college_biology": "science",
    "professional_law": "legal",
    "international_law": "legal",
    "professional_accounting": "finance",
    "high_school_macroeconomics": "finance",
    "logical_fallacies": "logic",
    "high_school_mathematics": "math",
    "college_physics": "science",
    "high_school_chemistry": "science",
}

_BBH_DESCRIPTIONS = {
    "boolean_expressions": "Evaluate the truth value of a Boolean expression.",
    "causal_judgement": "Answer a question about causation in a short story, as a typical person would.",
    "date_understanding": "Infer a date from a short context and pick it from the options.",
    "disambiguation_qa": "Find the antecedent of an ambiguous pronoun, or say that it is ambiguous.",
    "formal_fallacies": "Decide whether an argument is deductively valid given its stated premises.",
    "logical_deduction_three_objects": "Deduce the order of three objects from clues.",
    "logical_deduction_five_objects": "Deduce the order of five objects from clues.",
    "logical_deduction_seven_objects": "Deduce the order of seven objects from clues.",
    "navigate": "Decide whether following the instructions returns you to the starting point.",
    "object_counting": "Count the objects of a given kind in a list of possessions.",
    "tracking_shuffled_objects_three_objects": "Track objects swapped between three people.",
    "web_of_lies": "Decide whether a person tells the truth in a chain of statements.",
}

_DATASETS: dict[str, tuple[str, str, str]] = {
    # name: (domain, license, description)
    "gsm8k": ("math", "MIT", "Solve a grade-school math word problem; the answer is a number."),
    "medqa_usmle": ("medical", "MIT", "Answer a USMLE-style medical exam question by choosing one option."),
    "medmcqa": ("medical", "MIT", "Answer an Indian medical entrance exam question by choosing one option."),
    "pubmedqa": (
        "medical",
        "MIT",
        "Read a biomedical abstract and answer its research question with yes, no or maybe.",
    ),
    "arc_challenge": (
        "science",
        "CC BY-SA 4.0",
        "Answer a hard grade-school science question by choosing one option.",
    ),
    "ai2_science": (
        "science",
        "Apache-2.0",
        "Answer an elementary or 8th-grade science question by choosing one option.",
    ),
    "logiqa2": (
        "logic",
        "CC BY-NC-SA 4.0 (non-commercial)",
        "Read a passage and answer a logical reasoning question by choosing one option.",
    ),
}


def _data_root() -> Path:
    return Path(str(resources.files("tprompt.evaluator") / "data"))


@lru_cache(maxsize=1)
def _bundled() -> dict[str, tuple[str, str, str, Path]]:
    """name -> (domain, license, description, folder), found on disk."""
    root = _data_root()
    found: dict[str, tuple[str, str, str, Path]] = {}
    for name, (domain, lic, desc) in _DATASETS.items():
        if (root / name / "test.jsonl").exists():
            found[name] = (domain, lic, desc, root / name)
    for sub in sorted((root / "bbh").glob("*/test.jsonl")):
        task = sub.parent.name
        desc = _BBH_DESCRIPTIONS.get(task, f"BIG-Bench Hard: {task.replace('_', ' ')}.")
        found[f"bbh/{task}"] = ("reasoning", "MIT", desc, sub.parent)
    for sub in sorted((root / "mmlu").glob("*/test.jsonl")):
        subject = sub.parent.name
        desc = f"Answer a multiple-choice exam question on {subject.replace('_', ' ')} (MMLU)."
        found[f"mmlu/{subject}"] = (_MMLU_DOMAINS.get(subject, "general"), "MIT", desc, sub.parent)
    return found


def bundled_names() -> list[str]:
    """Names of the bundled tasks, sorted."""
    return sorted(_bundled())


def _read_rows(path: Path) -> list[Example]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                d = json.loads(line)
                choices = d.get("choices")
                rows.append(
                    Example(
                        id=str(d["id"]),
                        question=d["question"],
                        choices=tuple(choices) if choices is not None else None,
                        answer=str(d["answer"]).strip(),
                        answer_text=d.get("answer_text"),
                    )
                )
    return rows


def _answer_space_from_meta(folder: Path) -> tuple[str, ...] | None:
    with (folder / "train.jsonl").open(encoding="utf-8") as fh:
        first = json.loads(fh.readline())
    space = (first.get("meta") or {}).get("answer_space")
    return tuple(s.strip() for s in space) if space else None


@lru_cache(maxsize=64)
def _load_bundled(name: str) -> Task:
    domain, lic, desc, folder = _bundled()[name]
    train, test = _read_rows(folder / "train.jsonl"), _read_rows(folder / "test.jsonl")
    kind, space = infer_kind(train + test)
    if kind == "string":
        space = _answer_space_from_meta(folder) or space
    return Task(
        name=name,
        description=desc,
        kind=kind,
        answer_space=space,
        domain=domain,
        license=lic,
        non_commercial="NC" in lic,
        train=tuple(train),
        test=tuple(test),
    )


def load_task(name_or_path: str, *, skip_bad_rows: bool = False) -> Task:
    """Load a bundled task by name, or a user task from a path.

    A path is a JSONL file, a CSV file, or a folder with train.jsonl and
    test.jsonl (see docs/tasks.md). Raises UnknownTask for a name that is
    neither bundled nor an existing path, BadTaskFile for a malformed file
    (naming the file and line) unless ``skip_bad_rows``, in which case bad rows
    are left out and listed in ``Task.warnings``.
    """
    key = name_or_path.strip().strip("/")
    if key in _bundled():
        return _load_bundled(key)
    path = Path(name_or_path).expanduser()
    if path.exists():
        from ._userfiles import load_user_task

        return load_user_task(path, skip_bad_rows=skip_bad_rows)
    close = [n for n in bundled_names() if key and (key in n or n.endswith("/" + key))][:5]
    hint = f"did you mean {', '.join(close)}?" if close else "see `tprompt tasks`, or pass a path to a JSONL/CSV file or folder"
    raise UnknownTask(f"unknown task {name_or_path!r} (no bundled task and no such file)", hint=hint, task=name_or_path)



def list_tasks() -> list[TaskInfo]:
    """The bundled tasks with kind, sizes, domain and license, sorted by name."""
    infos = []
    for name in bundled_names():
        task = _load_bundled(name)
        infos.append(
            TaskInfo(
                name=name,
                kind=task.kind,
                answer_space=task.answer_space,
                n_train=len(task.train),
                n_test=len(task.test),
                domain=task.domain,
                license=task.license,
                non_commercial=task.non_commercial,
                description=task.description,
            )
        )
    return infos
