"""`tprompt eval` and `tprompt tasks` with the fake model; score_prompt directly."""

from __future__ import annotations

import json
import sqlite3

import pytest

from tprompt.cli import main
from tprompt.errors import UsageError
from tprompt.evaluator import LOGPROB_IFR_NOTE, METRIC_NAMES, check_mode, load_task, score_prompt
from tprompt.models import Recorder, get_model


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_eval_json_then_repeat_is_free(tmp_path, capsys):
    db = tmp_path / "t.db"
    args = ("--db", str(db), "eval", "--task", "mmlu/anatomy", "--prompt", "Answer carefully.",
            "--model", "fake", "--examples", "8", "--json")
    code, out, err = run(capsys, *args)
    assert code == 0, err
    first = json.loads(out)
    assert set(first["metrics"]) == set(METRIC_NAMES)
    assert first["counts"]["examples"] == 8 and first["counts"]["scorer_calls"] == 8
    assert first["counts"]["model_calls"] == 8 and first["counts"]["cache_hits"] == 0
    # auto, as in `run`: option probabilities for a multiple-choice task on a model that has them
    assert len(first["answers"]) == 8 and first["mode"] == "logprob"
    for answer in first["answers"]:
        if answer["parsed"] is None:  # unparseable: wrong with confidence 0
            assert not answer["correct"] and answer["confidence"] == 0.0
    code, out, _ = run(capsys, *args)
    again = json.loads(out)
    assert again["counts"]["cache_hits"] == 8 and again["counts"]["model_calls"] == 0
    assert again["metrics"] == first["metrics"] and again["objective"] == first["objective"]
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT agent, run_id, cache_hit FROM transcripts").fetchall()
    assert len(rows) == 16
    assert {(agent, run_id) for agent, run_id, _ in rows} == {("scorer", None)}
    assert sum(hit for _, _, hit in rows) == 8


def test_eval_table(tmp_path, capsys):
    prompt_file = tmp_path / "p.txt"
    prompt_file.write_text("Think, then answer.\n")
    code, out, err = run(capsys, "--db", str(tmp_path / "t.db"), "eval", "-t", "gsm8k", "--prompt-file",
                         str(prompt_file), "-m", "fake", "-n", "5", "--split", "train", "--seed", "2")
    assert code == 0, err
    # the columns of a run's held-out table (`run`, `show`)
    for label in ("accuracy", "ifr", "ece", "auroc", "pr_p", "pr_n", "brier", "objective", "scorer calls",
                  "cache hits", "parsed", "correct"):
        assert label in out
    assert "Think, then answer." in out and "train split" in out
    assert err == ""  # no progress bar when stderr is not a terminal


def test_eval_logprob_mode_says_ifr_is_by_construction(tmp_path, capsys):
    code, out, err = run(capsys, "--db", str(tmp_path / "t.db"), "eval", "--task", "pubmedqa", "--prompt", "x",
                         "--model", "fake", "-n", "6", "--mode", "logprob", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["metrics"]["ifr"] == 1.0 and data["notes"] == [LOGPROB_IFR_NOTE]
    assert all(a["parsed"] in ("A", "B", "C") for a in data["answers"])


def test_eval_user_task_with_skipped_rows(tmp_path, capsys):
    task = tmp_path / "mine.jsonl"
    rows = [json.dumps({"question": f"Q{i}?", "choices": ["x", "y"], "answer": "A"}) for i in range(6)]
    rows.insert(2, "{not json")
    task.write_text("\n".join(rows) + "\n")
    base = ("--db", str(tmp_path / "t.db"), "eval", "--task", str(task), "--prompt", "p", "-m", "fake")
    code, out, err = run(capsys, *base)
    assert code == 2 and f"{task}:3: invalid JSON" in err and out == ""
    assert not (tmp_path / "t.db").exists()
    code, out, err = run(capsys, *base, "--skip-bad-rows", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["warnings"] == [f"{task}:3: invalid JSON (Expecting property name enclosed in double quotes) (row skipped)"]
    assert "warning:" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (("--task", "nope", "--prompt", "x"), "unknown task 'nope'"),
        (("--task", "gsm8k", "--prompt", "x", "--mode", "logprob"), "gsm8k is not (use --mode generate or auto)"),
        (("--task", "gsm8k", "--prompt", "x", "--model", ""), "empty model spec"),
        (("--task", "gsm8k", "--prompt", "x", "--prompt-file", "p.txt"), "cannot read prompt file p.txt"),
        (("--task", "gsm8k", "--prompt-file", "/nonexistent/p.txt"), "cannot read prompt file"),
        (("--task", "gsm8k", "--prompt", "x", "--examples", "0"), "--examples must be at least 1"),
        (("--task", "gsm8k", "--prompt", "x", "--examples", "20000"), "--examples must be at most 10000, not 20000"),
        (("--task", "gsm8k", "--prompt", "x", "--split", "dev"), "unknown --split 'dev'"),
        (("--task", "gsm8k", "--prompt", "x", "--mode", "fast"), "mode: Input should be 'auto', 'generate' or 'logprob'"),
        (("--task", "gsm8k", "--prompt", "x", "--model", "nosuchbackend:zzz"), "error:"),
    ],
)
def test_eval_bad_input_one_line_exit_2_nothing_written(tmp_path, capsys, args, message):
    db = tmp_path / "t.db"
    model = () if "--model" in args else ("--model", "fake")
    code, out, err = run(capsys, "--db", str(db), "eval", *args, *model)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert out == ""
    assert not db.exists()


def test_tasks_json_and_table(capsys):
    code, out, _ = run(capsys, "tasks", "--json")
    assert code == 0
    data = {d["name"]: d for d in json.loads(out)}
    assert len(data) == 34  # pubmedqa_long (issue 20) joined the bundled tasks
    assert data["logiqa2"]["non_commercial"] is True
    assert data["bbh/object_counting"]["kind"] == "number"
    code, out, _ = run(capsys, "tasks")
    assert code == 0
    assert "bbh/tracking_shuffled_objects_three_objects" in out and "non-commercial: logiqa2" in out


def test_score_prompt_direct_progress_and_batches(tmp_path):
    task = load_task("bbh/date_understanding")
    rows = task.sample(5, split="train", seed=1)
    seen = []
    with Recorder(tmp_path / "t.db") as rec:
        ev = score_prompt("Be precise.", rows, task=task, model=get_model("fake"), recorder=rec,
                          progress=lambda done, total: seen.append((done, total)), batch_size=2)
        assert rec.model_calls == 5
    # per answered row (a local model reports each row, 944f2a3) and at each batch's end, never backwards
    assert seen[0] == (0, 5) and seen[-1] == (5, 5) and {(2, 5), (4, 5)} <= set(seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and {t for _, t in seen} == {5}
    assert ev.n_examples == 5 and len(ev.answers) == 5 and ev.task == "bbh/date_understanding"
    assert [a.example_id for a in ev.answers] == [r.id for r in rows]
    assert 0.0 <= ev.objective <= 1.0


def test_check_mode_rejects_logprob_on_backend_without_option_probs():
    class NoProbs:
        spec = "api:model"
        supports_option_probs = False

    with pytest.raises(UsageError, match="cannot give option probabilities"):
        check_mode("logprob", load_task("pubmedqa"), NoProbs())
    check_mode("logprob", load_task("bbh/web_of_lies"))  # fixed answer space: options Yes/No
    with pytest.raises(UsageError):
        check_mode("logprob", load_task("bbh/object_counting"))
