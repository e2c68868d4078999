"""Tasks: the bundled benchmark slices, and ``load_task`` for a name or a path.

A task is a named set of question rows with a gold answer each, split into
``train`` (what the optimizer sees) and ``test`` (held out). Bundled tasks live
in ``evaluator/data/`` (see its README.md and MANIFEST.json for sources and
licenses); users bring their own with a path (see :mod:`._userfiles` and
docs/tasks.md). What a task is (:class:`Task`, :class:`Example`, the answer
kinds and their inference) is in :mod:`.task_model`, shared with the user-file
loader; it is re-exported here.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from ..errors import UnknownTask
from .task_model import LETTERS, MAX_ANSWER_SPACE, AnswerKind, Example, Split, Task, infer_kind
from .template import ChatTemplate


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
    "pubmedqa_long": (
        "medical",
        "MIT",
        "Read a biomedical abstract's context and research question, and write the abstract's conclusion "
        "(two or three sentences).",
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
                refs = d.get("references") or ([d["reference"]] if d.get("reference") else [])
                rows.append(
                    Example(
                        id=str(d["id"]),
                        question=d["question"],
                        choices=tuple(choices) if choices is not None else None,
                        answer=str(d.get("answer") or "").strip(),
                        answer_text=d.get("answer_text"),
                        references=tuple(str(r) for r in refs),
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
    shown = repr(name_or_path) if len(name_or_path) <= 120 else f"{name_or_path[:60]!r}... ({len(name_or_path)} characters)"
    try:
        exists = path.exists()
    except OSError as exc:  # e.g. a name longer than the file system allows, even to look it up
        raise UnknownTask(f"unknown task {shown}: not a bundled task, and not a usable path ({exc.strerror or exc})",
                          hint="see `tprompt tasks`, or pass a path to a JSONL/CSV file or folder",
                          task=name_or_path) from exc
    if exists:
        from ._userfiles import load_user_task

        return load_user_task(path, skip_bad_rows=skip_bad_rows)
    close = [n for n in bundled_names() if key and (key in n or n.endswith("/" + key))][:5]
    hint = f"did you mean {', '.join(close)}?" if close else "see `tprompt tasks`, or pass a path to a JSONL/CSV file or folder"
    raise UnknownTask(f"unknown task {shown} (no bundled task and no such file)", hint=hint, task=name_or_path)



def task_template(template: ChatTemplate | None, task: str) -> ChatTemplate | None:
    """The template a run scores ``task`` under: the run's ``template``, except on a bundled benchmark.

    A bundled task keeps its declared Q&A template (None here: the scorer's
    ``scorer.user`` message under the prompt as system message), whatever the run's template.
    """
    if template is None or task.strip().strip("/") in _bundled():
        return None
    return template


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


__all__ = (
    "LETTERS", "MAX_ANSWER_SPACE", "AnswerKind", "Example", "Split", "Task", "TaskInfo", "bundled_names", "infer_kind",
    "list_tasks", "load_task", "task_template",
)
