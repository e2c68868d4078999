"""Loading a user's own task from JSONL, CSV or a folder (format: docs/tasks.md).

Every bad row raises :class:`BadTaskFile` naming the file and the line, unless
``skip_bad_rows`` is set; then the row is left out and its reason kept in
``Task.warnings``. Nothing is dropped silently.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

from ..errors import BadTaskFile
from .task_model import LETTERS, Example, SplitRuleError, Task, infer_kind, split_rows
from .template import MAX_DESCRIPTION_CHARS

#: A file next to a task file (``STEM.description.txt``) or in a task folder (``description.txt``).
DESCRIPTION_SUFFIX = ".description.txt"

class _Rows:
    """Collects rows and problems of one task, file by file."""

    def __init__(self, skip_bad_rows: bool) -> None:
        self.skip = skip_bad_rows
        self.rows: list[tuple[Example, str | None, str]] = []  # (example, split or None, where)
        self.warnings: list[str] = []
        self.ids: set[str] = set()
        self.description: str | None = None
        self.mc: bool | None = None  # whether rows have options, fixed by the first good row
        self.open: bool | None = None  # whether rows are open-ended (references, no gold answer), likewise

    def describe(self, text: Any, where: str) -> None:
        """The task's description, from a JSONL header line or a sidecar file."""
        if not isinstance(text, str) or not text.strip():
            raise BadTaskFile(f"{where}: the description must be non-empty text", where=where,
                              hint='a header line reads {"description": "what the task is"}')
        if len(text) > MAX_DESCRIPTION_CHARS:
            raise BadTaskFile(f"{where}: the description has {len(text)} characters, more than the "
                              f"{MAX_DESCRIPTION_CHARS} the proposer's prompt takes", where=where,
                              hint="shorten it to a few sentences")
        self.description = text.strip()

    def bad(self, where: str, reason: str) -> None:
        if not self.skip:
            raise BadTaskFile(
                f"{where}: {reason}",
                hint="fix the row (`tprompt eval --skip-bad-rows` lists and skips bad rows; a run needs a clean file)",
                where=where,
            )
        self.warnings.append(f"{where}: {reason} (row skipped)")

    def add(self, data: Any, where: str, default_id: str) -> None:
        if not isinstance(data, dict):
            return self.bad(where, "a row must be an object with question/answer fields")
        fields = input_fields(data)
        question = data.get("question")
        if question is not None and not isinstance(question, str):
            return self.bad(where, f"'question' must be text, got {_json_kind(question)} ({question!r:.40})")
        if question is None and any(v.strip() for v in fields.values()):
            question = "\n".join(f"{k}: {v}" for k, v in fields.items())  # a row of the user's own fields
        if not isinstance(question, str) or not question.strip():
            return self.bad(where, "missing or empty 'question' (or any other input field)")
        is_open = "reference" in data or "references" in data
        if is_open:
            return self._add_open(data, question, fields, where, default_id)
        if "answer" not in data or data["answer"] is None or str(data["answer"]).strip() == "":
            return self.bad(where, "missing or empty 'answer' (an open-ended row gives 'reference' or 'references' "
                                   'instead; a row only a judge scores gives "reference": null)')
        if self.open:
            return self.bad(where, "the first rows are open-ended (reference), this one has an answer (mixed task)")
        answer = str(data["answer"]).strip()
        choices = data.get("choices")
        if choices is not None:
            if (
                not isinstance(choices, (list, tuple))
                or len(choices) < 2
                or len(choices) > len(LETTERS)
                or not all(isinstance(c, (str, int, float)) and str(c).strip() for c in choices)
            ):
                return self.bad(where, "'choices' must be a list of 2 to 26 non-empty option texts, or null")
            choices = tuple(str(c).strip() for c in choices)
            letters = LETTERS[: len(choices)]
            if answer.upper() in letters and len(answer) == 1:
                answer = answer.upper()
            elif answer in choices:  # the option text instead of its letter
                answer = letters[choices.index(answer)]
            else:
                return self.bad(
                    where, f"answer {answer!r} is not one of the option letters {', '.join(letters)}"
                )
        is_mc = choices is not None
        if self.mc is not None and is_mc != self.mc:
            kind = "have options" if self.mc else "have no options"
            return self.bad(where, f"the first rows {kind}, this one does not match (mixed task)")
        placed = self._split_and_id(data, where, default_id)
        if placed is None:
            return None
        split, row_id = placed
        answer_text = data.get("answer_text")
        if is_mc and not answer_text:
            assert choices is not None  # is_mc: the row has choices
            answer_text = choices[LETTERS.index(answer)]
        example = Example(
            id=row_id,
            question=question.strip(),
            choices=choices,
            answer=answer,
            answer_text=str(answer_text) if answer_text is not None else None,
            fields=fields,
        )
        self.mc, self.open = is_mc, False
        self._keep(example, split, where)

    def _add_open(self, data: dict[str, Any], question: str, fields: dict[str, str], where: str,
                  default_id: str) -> None:
        """An open-ended row: free-text reference(s) (none: judged only), an optional pattern and JSON schema."""
        if self.open is False:
            return self.bad(where, "the first rows have an 'answer', this one has a 'reference' (mixed task)")
        if data.get("choices") is not None:
            return self.bad(where, "an open-ended row (with 'reference') cannot have 'choices'")
        refs = data.get("references", data.get("reference"))
        refs = [] if refs is None else refs if isinstance(refs, list) else [refs]
        if not all(isinstance(r, str) for r in refs):
            return self.bad(where, "'reference' must be text and 'references' a list of texts")
        refs = [r.strip() for r in refs if r.strip()]
        pattern = data.get("pattern")
        if pattern is not None:
            if not isinstance(pattern, str):
                return self.bad(where, "'pattern' must be a regular expression as text")
            try:
                re.compile(pattern)
            except re.error as exc:
                return self.bad(where, f"'pattern' is not a valid regular expression ({exc})")
        schema = data.get("schema", data.get("json_schema"))
        if schema is not None and not isinstance(schema, dict):
            return self.bad(where, "'schema' must be a JSON Schema object")
        placed = self._split_and_id(data, where, default_id)
        if placed is None:
            return None
        split, row_id = placed
        example = Example(id=row_id, question=question.strip(), references=tuple(refs), pattern=pattern,
                          json_schema=schema, fields=fields)
        self.open, self.mc = True, False
        self._keep(example, split, where)

    def _split_and_id(self, data: dict[str, Any], where: str, default_id: str) -> tuple[str | None, str] | None:
        """A row's split (None: not given) and id, checked; None when the row is bad (reported by :meth:`bad`)."""
        split = data.get("split")
        row_id = str(data["id"]) if data.get("id") not in (None, "") else default_id
        if split is not None and split not in ("train", "test"):
            self.bad(where, f"'split' must be 'train' or 'test', not {split!r}")
        elif row_id in self.ids:
            self.bad(where, f"duplicate id {row_id!r}")
        else:
            return split, row_id
        return None

    def _keep(self, example: Example, split: str | None, where: str) -> None:
        self.ids.add(example.id)
        self.rows.append((example, split, where))


#: Keys of a row that are not input fields a template may name.
NON_INPUT_KEYS = frozenset({"answer", "answer_text", "reference", "references", "choices", "id", "split", "pattern",
                            "schema", "json_schema", "meta"})


def input_fields(data: dict[str, Any]) -> dict[str, str]:
    """A row's input fields as text (JSON for numbers, lists and objects), for a template's placeholders."""
    return {str(k): v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
            for k, v in data.items() if k not in NON_INPUT_KEYS and v is not None}


def _read_jsonl(path: Path, acc: _Rows, forced_split: str | None = None) -> None:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BadTaskFile(f"{path}: not UTF-8 text ({exc.reason})", where=str(path)) from exc
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            acc.bad(where, f"invalid JSON ({exc.msg})")
            continue
        try:  # JSON escapes can spell a lone surrogate ("\\ud800"), which no text store or terminal takes
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            bad_char = exc.object[exc.start:exc.end].encode("unicode_escape").decode("ascii")
            acc.bad(where, f"not valid Unicode: a lone surrogate ({bad_char}); write the character itself")
            continue
        if isinstance(data, dict) and set(data) == {"description"} and not acc.rows:  # the header line
            acc.describe(data["description"], where)
            continue
        if forced_split is not None and isinstance(data, dict):
            data = {**data, "split": forced_split}
        acc.add(data, where, f"{path.stem}-{lineno}")


def _parse_choices_cell(cell: str) -> list[str] | str | None:
    """A CSV choices cell: a JSON list, or options separated by '|'; empty = no options."""
    cell = cell.strip()
    if not cell:
        return None
    if cell.startswith("["):
        try:
            value = json.loads(cell)
        except json.JSONDecodeError:
            return "the choices cell starts with '[' but is not a JSON list"
        return value if isinstance(value, list) else "the choices cell is not a JSON list"
    return [c.strip() for c in cell.split("|")]


def _json_kind(value: Any) -> str:
    return {bool: "true/false", int: "a number", float: "a number", list: "a list", dict: "an object"}.get(
        type(value), type(value).__name__
    )


def _read_csv(path: Path, acc: _Rows, forced_split: str | None = None) -> None:
    reader: Any = None
    try:
        fh = path.open(encoding="utf-8-sig", newline="")
        with fh:
            # strict: an unterminated quote is an error, not a cell swallowing the rest of the file
            reader = csv.DictReader(fh, strict=True)
            header = [h.strip() for h in (reader.fieldnames or [])]
            needed = ("reference",) if "reference" in header and "answer" not in header else ("answer",)
            missing = [c for c in needed if c not in header]
            if missing:
                raise BadTaskFile(
                    f"{path}:1: the CSV header lacks column(s) {', '.join(missing)}",
                    hint="columns: answer (or reference), question or your own input fields, and optionally "
                         "choices, id, split",
                    where=f"{path}:1",
                )
            reader.fieldnames = header
            for raw in reader:
                where = f"{path}:{reader.line_num}"
                if None in raw:
                    acc.bad(where, "more cells than header columns")
                    continue
                data: dict[str, Any] = {k: (v or "").strip() for k, v in raw.items()}
                if data.get("answer") and not data.get("reference"):
                    data.pop("reference", None)  # a closed row of a file with both columns
                choices = _parse_choices_cell(data.get("choices", ""))
                if isinstance(choices, str):
                    acc.bad(where, choices)
                    continue
                data["choices"] = choices
                data["split"] = forced_split or data.get("split") or None
                acc.add(data, where, f"{path.stem}-{reader.line_num}")
    except UnicodeDecodeError as exc:
        raise BadTaskFile(f"{path}: not UTF-8 text ({exc.reason})", where=str(path)) from exc
    except csv.Error as exc:
        line = f"{path}:{reader.line_num if reader is not None else 1}"
        raise BadTaskFile(
            f"{line}: malformed CSV ({exc})", hint="check the quotes on that line and the ones before it", where=line
        ) from exc


def _read(path: Path, acc: _Rows, forced_split: str | None = None) -> None:
    if not path.is_file():  # a device (/dev/zero), a FIFO or a socket: reading it would never end, or block
        raise BadTaskFile(f"{path}: not a regular file (a device, pipe or socket)",
                          hint="pass a JSONL or CSV file, or a folder holding train/test files", where=str(path))
    if path.suffix.lower() == ".csv":
        _read_csv(path, acc, forced_split)
    else:
        _read_jsonl(path, acc, forced_split)


def load_user_task(path: Path, *, skip_bad_rows: bool = False) -> Task:
    """Load a task from a JSONL/CSV file or a folder holding train/test files."""
    acc = _Rows(skip_bad_rows)
    if path.is_dir():
        files = {}
        for split in ("train", "test"):
            for ext in (".jsonl", ".csv"):
                if (path / f"{split}{ext}").exists():
                    files[split] = path / f"{split}{ext}"
                    break
            else:
                raise BadTaskFile(
                    f"{path}: a task folder needs {split}.jsonl (or {split}.csv)",
                    hint="see docs/tasks.md",
                    where=str(path),
                )
        for split, file in files.items():
            _read(file, acc, forced_split=split)
    else:
        _read(path, acc)
    sidecar = path / "description.txt" if path.is_dir() else path.with_name(path.stem + DESCRIPTION_SUFFIX)
    if sidecar.is_file():
        if acc.description is not None:
            raise BadTaskFile(f"{sidecar}: {path} has a description line already; give one or the other",
                              where=str(sidecar))
        try:
            acc.describe(sidecar.read_text(encoding="utf-8"), str(sidecar))
        except (OSError, UnicodeDecodeError) as exc:
            raise BadTaskFile(f"cannot read {sidecar}: {exc}", where=str(sidecar)) from exc
    rows = [r for r, _, _ in acc.rows]
    if not rows:
        raise BadTaskFile(f"{path}: no usable rows", hint="see docs/tasks.md for the row format", where=str(path))
    try:
        train, test = split_rows(rows, [s for _, s, _ in acc.rows])
    except SplitRuleError as exc:
        where = acc.rows[exc.row][2] if exc.row is not None else str(path)
        hint = "give every row a split, or none (then the file is split 20/80 by id hash)" if exc.row is not None else None
        raise BadTaskFile(f"{where}: {exc}", hint=hint, where=where) from exc
    kind, space = infer_kind(train + test)
    desc = acc.description or _default_description(kind, space)
    return Task(
        name=str(path),
        description=desc,
        kind=kind,
        answer_space=space,
        train=tuple(train),
        test=tuple(test),
        warnings=tuple(acc.warnings),
    )


def _default_description(kind: str, space: tuple[str, ...] | None) -> str:
    """What a task without a description of its own is said to be (from its answer kind)."""
    if kind == "text":
        desc = "Respond to each request."
    elif kind == "choice":
        desc = "Answer each question by choosing one of the lettered options."
    elif kind == "number":
        desc = "Answer each question with a number."
    elif space:
        desc = f"Answer each question with one of: {', '.join(space)}."
    else:
        desc = "Answer each question with a short answer."
    return desc
