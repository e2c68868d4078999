"""benchmarks/head_to_head.py without DSPy or a server: its options, budget accounting, interval and table on
canned figures (the end-to-end run is a benchmark: docs/benchmarks.md)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

from tprompt.config import make_config

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "head_to_head.py"


@pytest.fixture(scope="module")
def h2h():
    spec = importlib.util.spec_from_file_location("head_to_head", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["head_to_head"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("head_to_head", None)


def test_interval_is_the_t_interval(h2h) -> None:
    got = h2h.interval([0.5, 0.6, 0.7])
    half = 4.303 * 0.1 / math.sqrt(3)
    assert got.n == 3 and got.mean == pytest.approx(0.6)
    assert (got.lo, got.hi) == (pytest.approx(0.6 - half), pytest.approx(0.6 + half))
    assert h2h.interval([0.25, 0.25, 0.25]).lo == pytest.approx(0.25)  # no spread: a point
    one = h2h.interval([0.4])
    assert one.lo is None and one.hi is None
    assert h2h.interval([0.0, 1.0] * 20).hi == pytest.approx(0.5 + 1.96 * 0.5063696835418333 / math.sqrt(40))


def test_the_budget_plan(h2h) -> None:
    args = h2h.parse_args(["--budget", "12", "--examples", "2", "--candidates", "2", "--top-k", "1", "--steps", "1"])
    # Source: 2 rows x (original + 1 step x 2 candidates); 1 transferred prompt re-scored; one target step.
    assert h2h.transfer_minimum(args) == 2 * (1 + 2) + 2 + 2 * 2 == 12
    assert h2h.mipro_trials(12, 2) == 5  # (1 + 5) full evaluations of 2 rows
    assert args.seeds == [0, 1, 2] and args.arms == list(h2h.ARMS)
    config = h2h.tprompt_config("reflective+transfer", 1, args, "http://127.0.0.1:9/v1", "m")
    made = make_config(config)
    assert (made.proposer_style, made.parent_selection, made.transfer, made.source_tasks) == (
        "reflective", "pareto", True, ["ai2_science"])
    assert made.scorer_budget == 12 and made.scorer == "openai:m" and made.seed == 1 and made.mode == "generate"
    thinking = {"chat_template_kwargs": {"enable_thinking": False}}
    qwen = h2h.parse_args(["--extra-body", json.dumps(thinking)])
    assert make_config(h2h.tprompt_config("paper", 0, qwen, "http://127.0.0.1:9/v1", "m")).extra_body == thinking
    plain = make_config(h2h.tprompt_config("paper", 0, args, "http://127.0.0.1:9/v1", "m"))
    assert (plain.proposer_style, plain.transfer, plain.source_tasks) == ("paper", False, [])
    assert plain.stage2_steps * plain.candidates * plain.examples >= 12  # enough target steps to spend the budget


@pytest.mark.parametrize(("argv", "says"), [
    (["--budget", "11"], "--budget 11 is too small for the transfer arms: they need 12"),
    (["--budget", "3", "--arms", "mipro"], "too small for MIPROv2: it needs 4"),
    (["--budget", "5", "--arms", "gepa"], "too small for GEPA: it needs 6"),
    (["--seeds", "1"], "--seeds needs at least 2"),
    (["--seeds", "a,b"], "is not a comma-separated list of integers"),
    (["--arms", "paper,opro"], "unknown arm 'opro'"),
    (["--base-url", "http://x/v1"], "--base-url and --model go together"),
    (["--examples", "0"], "--examples must be a positive number"),
    (["--extra-body", "[1]"], "--extra-body must be a JSON object"),
])
def test_bad_options_are_one_line(h2h, capsys: pytest.CaptureFixture[str], argv: list[str], says: str) -> None:
    with pytest.raises(SystemExit) as exited:
        h2h.parse_args(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err


def test_a_tprompt_arm_is_read_from_run_and_show(h2h) -> None:
    ran = {"run_id": "r-1", "status": "completed", "table": [
        {"role": "original", "prompt": "Answer the question.", "accuracy": 0.25},
        {"role": "best_target", "prompt": "Pick the letter.", "accuracy": 0.75}]}
    shown = {"scorer_calls": {"source": 6, "target": 6, "test": 12}, "proposer_calls": {"source": 2, "target": 3}}
    got = h2h.tprompt_result("paper+transfer", 2, ran, shown, 9.5)
    assert (got.test_score, got.rollouts, got.proposer_calls, got.prompt_chars) == (0.75, 12, 5, 16)
    paused = h2h.tprompt_result("paper", 2, {**ran, "status": "paused"}, shown, 1.0)
    assert paused.test_score is None and "paused" in paused.error


def test_table_and_results_file(h2h, tmp_path: Path) -> None:
    R = h2h.ArmResult
    results = [R("gepa", s, v, 12 + s % 2, 3, 10.0, 40, "p") for s, v in enumerate([0.5, 0.25, 0.75])]
    results += [R("mipro", 0, None, 0, 0, 1.0, 0, error="boom")]
    summary = h2h.summarize(results, ["gepa", "mipro"])
    text = h2h.table(summary)
    assert "0.500 [" in text and "12-13" in text and "failed" in text
    md = h2h.table(summary, markdown=True)
    assert md.splitlines()[0].startswith("| arm |") and md.count("\n") == 3
    path = tmp_path / "r.json"
    h2h.save_results(path, {"budget": 12}, results)
    assert json.loads(path.read_text())["plan"] == {"budget": 12}
    kept = h2h.load_results(path, {"budget": 12})
    assert [r.arm for r in kept] == ["gepa"] * 3  # a failed arm is run again
    assert h2h.load_results(path, {"budget": 24}) == []  # another plan: nothing reused
