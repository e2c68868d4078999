"""Bundled tasks load and their gold answers parse; user task files and their errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tprompt.errors import BadTaskFile, UnknownTask, UsageError
from tprompt.evaluator import list_tasks, load_task, parse_output
from tprompt.evaluator.parsing import gold_answer, is_correct
from tprompt.evaluator.tasks import LETTERS

DATA = Path(__file__).resolve().parents[1] / "evaluator" / "data"
BUNDLED = [info.name for info in list_tasks()]


def test_bundled_task_names_and_metadata():
    names = set(BUNDLED)
    for expected in ("gsm8k", "arc_challenge", "ai2_science", "medqa_usmle", "medmcqa", "pubmedqa", "logiqa2",
                     "bbh/object_counting", "bbh/navigate", "mmlu/anatomy", "mmlu/professional_law"):
        assert expected in names
    assert len(names) == 8 + 12 + 14  # pubmedqa_long (issue 20) is the eighth dataset
    info = {i.name: i for i in list_tasks()}
    assert info["logiqa2"].non_commercial and "NC" in info["logiqa2"].license
    assert not any(i.non_commercial for n, i in info.items() if n != "logiqa2")
    assert info["gsm8k"].kind == "number" and info["bbh/object_counting"].kind == "number"
    assert info["bbh/boolean_expressions"].answer_space == ("True", "False")
    assert info["bbh/formal_fallacies"].answer_space == ("valid", "invalid")
    assert info["bbh/web_of_lies"].kind == "string" and set(info["bbh/web_of_lies"].answer_space) == {"Yes", "No"}
    assert info["mmlu/anatomy"].domain == "medical" and info["mmlu/professional_law"].domain == "legal"
    assert (info["gsm8k"].n_train, info["gsm8k"].n_test) == (500, 500)


def test_bundled_data_ships_licenses_and_manifest():
    manifest = json.loads((DATA / "MANIFEST.json").read_text())
    assert set(manifest["datasets"]) >= {"gsm8k", "bbh", "mmlu", "logiqa2"}
    for folder in ("gsm8k", "bbh", "mmlu", "pubmedqa", "ai2_science", "medqa_usmle", "medmcqa"):
        assert (DATA / folder / "LICENSE.upstream").exists(), folder
    assert "NON-COMMERCIAL" in (DATA / "logiqa2" / "README.md").read_text()


@pytest.mark.parametrize("name", BUNDLED)
def test_every_bundled_task_loads_and_gold_parses_under_its_kind(name):
    task = load_task(name)
    assert task.train and task.test
    assert task.description
    ids = [ex.id for ex in task.train + task.test]
    assert len(set(ids)) == len(ids)
    for ex in task.train + task.test:
        assert ex.question.strip()
        if task.kind == "choice":
            assert ex.choices and ex.answer in LETTERS[: len(ex.choices)]
            text = f"Answer: {ex.answer}\nConfidence: 80%"
        else:
            assert ex.choices is None
            text = f"Answer: {ex.answer}\nConfidence: 80%"
        if task.kind == "text":  # open-ended (issue 20): the whole reply is the answer, compared with the reference
            text = ex.references[0]
        gold = gold_answer(ex, task)
        assert gold is not None, ex.id
        if task.answer_space:
            assert gold in task.answer_space
        parsed = parse_output(text, kind=task.kind, choices=ex.choices, answer_space=task.answer_space)
        assert parsed.followed_format and is_correct(parsed.answer, ex, task), (ex.id, ex.answer, parsed)
        if task.kind == "choice":  # the option text instead of the letter also counts
            by_text = parse_output(f"Answer: {ex.choices[LETTERS.index(ex.answer)]}", kind="choice",
                                   choices=ex.choices)
            gold_text = ex.choices[LETTERS.index(ex.answer)]
            if ex.choices.count(gold_text) == 1 and len(gold_text.strip()) > 1:  # "B" as text reads as a letter
                assert by_text.answer == ex.answer, ex.id


def test_sample_is_deterministic_and_bounded():
    task = load_task("mmlu/anatomy")
    a = task.sample(10, split="test", seed=3)
    assert [e.id for e in a] == [e.id for e in task.sample(10, split="test", seed=3)]
    assert [e.id for e in a] != [e.id for e in task.sample(10, split="test", seed=4)]
    assert len({e.id for e in a}) == 10
    assert len(task.sample(10_000, split="train")) == len(task.train)
    with pytest.raises(UsageError):
        task.sample(5, split="dev")


def test_unknown_task():
    with pytest.raises(UnknownTask) as exc:
        load_task("anatomy")
    assert "mmlu/anatomy" in str(exc.value)


# --- user task files -------------------------------------------------------------


def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


MC_ROWS = [
    {"id": f"q{i}", "question": f"What is {i}+1?", "choices": [str(i), str(i + 1), str(i + 2)], "answer": "B"}
    for i in range(10)
]


def test_user_jsonl_without_split_is_split_deterministically(tmp_path):
    path = _write_jsonl(tmp_path / "mine.jsonl", MC_ROWS)
    task = load_task(str(path))
    assert task.kind == "choice" and task.name == str(path)
    assert len(task.train) == 2 and len(task.test) == 8
    again = load_task(str(path))
    assert [e.id for e in again.train] == [e.id for e in task.train]
    assert task.test[0].answer_text is not None


def test_user_jsonl_with_split_and_generated_ids(tmp_path):
    rows = [{"question": "2+2?", "answer": "4", "split": "train"}, {"question": "3+3?", "answer": "6", "split": "test"}]
    task = load_task(str(_write_jsonl(tmp_path / "math.jsonl", rows)))
    assert task.kind == "number"
    assert task.train[0].id == "math-1" and task.test[0].id == "math-2"


def test_user_folder_and_answer_space(tmp_path):
    rows = [{"question": f"Is {i} even?", "answer": "Yes" if i % 2 == 0 else "No"} for i in range(8)]
    _write_jsonl(tmp_path / "train.jsonl", rows[:4])
    _write_jsonl(tmp_path / "test.jsonl", rows[4:])
    task = load_task(str(tmp_path))
    assert task.kind == "string" and task.answer_space == ("Yes", "No")
    assert len(task.train) == 4 and len(task.test) == 4


def test_user_mc_answer_given_as_option_text(tmp_path):
    rows = [{"question": "Capital of France?", "choices": ["Rome", "Paris"], "answer": "Paris"},
            {"question": "Capital of Italy?", "choices": ["Rome", "Paris"], "answer": "a"}]
    task = load_task(str(_write_jsonl(tmp_path / "caps.jsonl", rows)))
    assert sorted(e.answer for e in task.train + task.test) == ["A", "B"]


def test_user_csv_with_pipe_and_json_choices(tmp_path):
    path = tmp_path / "quiz.csv"
    path.write_text(
        'question,choices,answer,split\n'
        '"Capital of France?",Rome|Paris|Berlin,B,train\n'
        '"Largest planet?","[""Mars"", ""Jupiter, the giant""]",B,test\n'
        '"Smallest prime?", 1 | 2 | 3 ,B,test\n'
    )
    task = load_task(str(path))
    assert task.kind == "choice"
    assert task.train[0].choices == ("Rome", "Paris", "Berlin")
    assert task.test[0].choices == ("Mars", "Jupiter, the giant")
    assert task.test[1].choices == ("1", "2", "3") and task.test[1].id == "quiz-4"


@pytest.mark.parametrize(
    "bad_line, reason",
    [
        ('{"question": "x", "answer": ', "invalid JSON"),
        ({"question": "What?"}, "missing or empty 'answer'"),
        ({"answer": "B", "choices": ["a", "b"]}, "missing or empty 'question'"),
        ({"question": "   ", "answer": "A", "choices": ["a", "b"]}, "empty 'question'"),
        ({"question": "Pick", "choices": ["a", "b"], "answer": "E"}, "not one of the option letters A, B"),
        ({"question": "Pick", "choices": ["only one"], "answer": "A"}, "'choices' must be"),
        ({"question": "Open?", "answer": "7"}, "mixed task"),
        ({"id": "q0", "question": "Dup", "choices": ["a", "b"], "answer": "A"}, "duplicate id 'q0'"),
        ([1, 2], "must be an object"),
    ],
)
def test_bad_rows_name_file_and_line_or_are_skipped_and_reported(tmp_path, bad_line, reason):
    rows = MC_ROWS[:3] + [bad_line] + MC_ROWS[3:]
    path = _write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(BadTaskFile) as exc:
        load_task(str(path))
    assert f"{path}:4:" in str(exc.value) and reason in str(exc.value)
    assert exc.value.exit_code == 2
    task = load_task(str(path), skip_bad_rows=True)
    assert len(task.train) + len(task.test) == len(MC_ROWS)
    assert len(task.warnings) == 1 and task.warnings[0].startswith(f"{path}:4:") and reason in task.warnings[0]


@pytest.mark.parametrize(
    "bad_line, reason",
    [
        ({"id": "o0", "question": "Dup", "reference": "x"}, "duplicate id 'o0'"),
        ({"id": "o9", "question": "Dev", "reference": "x", "split": "dev"}, "'split' must be 'train' or 'test'"),
    ],
)
def test_bad_open_rows_share_the_split_and_id_rule(tmp_path, bad_line, reason):
    rows = [{"id": f"o{i}", "question": f"Say {i}", "reference": str(i)} for i in range(6)]
    path = _write_jsonl(tmp_path / "open.jsonl", rows[:3] + [bad_line] + rows[3:])
    with pytest.raises(BadTaskFile, match=f"{path}:4: {reason}"):
        load_task(str(path))
    task = load_task(str(path), skip_bad_rows=True)
    assert sorted(e.id for e in (*task.train, *task.test)) == [r["id"] for r in rows]
    assert len(task.warnings) == 1 and reason in task.warnings[0]


def test_bad_csv_rows_and_header(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text("question,choices,answer\nQ1,a|b,A\n,a|b,A\nQ3,a|b,Z\nQ4,a|b,B\n")
    with pytest.raises(BadTaskFile, match=r"q\.csv:3: missing or empty 'question'"):
        load_task(str(path))
    task = load_task(str(path), skip_bad_rows=True)
    assert [w.split(": ")[0] for w in task.warnings] == [f"{path}:3", f"{path}:4"]
    nohead = tmp_path / "h.csv"
    nohead.write_text("q,a\nx,y\n")
    with pytest.raises(BadTaskFile, match="lacks column"):
        load_task(str(nohead))


def test_bad_files_as_a_whole(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(BadTaskFile, match="no usable rows"):
        load_task(str(empty))
    folder = tmp_path / "half"
    folder.mkdir()
    _write_jsonl(folder / "train.jsonl", MC_ROWS)
    with pytest.raises(BadTaskFile, match="test.jsonl"):
        load_task(str(folder))
    mixed = _write_jsonl(tmp_path / "mixed.jsonl", [{**MC_ROWS[0], "split": "train"}, MC_ROWS[1]])
    with pytest.raises(BadTaskFile, match=r"mixed\.jsonl:2: some rows have a 'split'"):
        load_task(str(mixed))
    one = _write_jsonl(tmp_path / "one.jsonl", MC_ROWS[:1])
    with pytest.raises(BadTaskFile, match="at least 2 rows"):
        load_task(str(one))
    badsplit = _write_jsonl(tmp_path / "bs.jsonl", [{**MC_ROWS[0], "split": "dev"}])
    with pytest.raises(BadTaskFile, match="'split' must be"):
        load_task(str(badsplit))
    binary = tmp_path / "bin.jsonl"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(BadTaskFile, match="not UTF-8"):
        load_task(str(binary))


@pytest.mark.parametrize("kind", ["device", "fifo"])
def test_a_task_path_that_is_not_a_regular_file_is_refused(tmp_path: Path, kind: str) -> None:
    # Issue 32: --task /dev/zero read without end; a FIFO blocks its reader forever.
    if kind == "device":
        path = Path("/dev/zero")
    else:
        path = tmp_path / "rows.jsonl"
        os.mkfifo(path)
    with pytest.raises(BadTaskFile, match="not a regular file"):
        load_task(str(path))
