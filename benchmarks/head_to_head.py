"""tprompt against DSPy's GEPA and MIPROv2 at the same rollout budget (issue 30). Prints a table; not a test.

    python benchmarks/head_to_head.py [--budget 12] [--examples 2] [--test-examples 4] [--seeds 0,1,2]
    python benchmarks/head_to_head.py --base-url http://127.0.0.1:8000/v1 --model Qwen/Qwen3-8B --budget 600 ...

One OpenAI-compatible server answers every arm: ``transformers serve`` on the
embedded SmolLM2-135M-Instruct (started here from its local folder, as the
served-model tests start it, and stopped at the end), or the server given by
``--base-url`` and ``--model`` (vLLM on a GPU box). The arms:

* ``paper``, ``paper+transfer``: ``tprompt run`` with the paper's proposer, on
  the target alone or with the ``--source`` stage and transfer;
* ``reflective``, ``reflective+transfer``: the same with
  ``--proposer-style reflective --parent-selection pareto``;
* ``gepa``: ``dspy.GEPA`` with ``max_metric_calls`` = the budget;
* ``mipro``: ``dspy.MIPROv2``, zero-shot (instructions only, as tprompt), full
  evaluations on the training rows, ``num_trials`` = budget / rows - 1.

All arms get the same target task, the same ``--examples`` training rows and
``--test-examples`` held-out rows of each seed (``Task.sample`` by seed, as a
tprompt run draws them), the same starting prompt, the same caps on answer and
proposal tokens, and the same budget of **rollouts**: scorer (task-LM) calls on
training examples, both stages of a transfer arm counted. tprompt arms get it
as ``scorer_budget`` (the stages end when the next candidate would not fit and
the run finishes with its test table) with ``--max-rollouts`` as a hard stop;
DSPy arms are counted by a counting LM, and the count used is reported, not
assumed. The held-out score is accuracy (exact match of the option letter) on
the test rows: tprompt's test table for the best target prompt, DSPy's
``Evaluate`` of the optimized program. tprompt selects candidates by its
objective (accuracy with calibration terms), DSPy by accuracy.

DSPy is never a dependency of tprompt: it is installed in the benchmark's own
environment (``--venv``, default ``~/.cache/tprompt/bench-dspy``, made on the
first run with ``pip install dspy optuna``) and driven there by _h2h_dspy.py.
Each finished (arm, seed) is written to ``--results`` at once; rerunning with
the same settings and file reuses them (a killed run keeps what it finished).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # the test suite's server starter

from _own_venv import CACHE, own_python  # noqa: E402

TPROMPT_ARMS = ("paper", "paper+transfer", "reflective", "reflective+transfer")
DSPY_ARMS = ("gepa", "mipro")
ARMS = TPROMPT_ARMS + DSPY_ARMS
DSPY_DRIVER = HERE / "_h2h_dspy.py"

#: Two-sided 95% Student t quantiles by degrees of freedom (1.96 past 30).
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


@dataclass(frozen=True)
class ArmResult:
    """One arm on one seed."""

    arm: str
    seed: int
    test_score: float | None
    rollouts: int
    proposer_calls: int
    wall_s: float
    prompt_chars: int
    prompt: str = ""
    error: str = ""


@dataclass(frozen=True)
class Interval:
    """Mean and two-sided 95% t interval of a sample (``lo``/``hi`` None with fewer than two values)."""

    mean: float
    lo: float | None
    hi: float | None
    n: int


def interval(values: Sequence[float]) -> Interval:
    """Mean ± t(0.975, n-1) x sd / sqrt(n) of ``values``."""
    if not values:
        raise ValueError("no values")
    mean = statistics.fmean(values)
    if len(values) < 2:
        return Interval(mean, None, None, len(values))
    df = len(values) - 1
    half = (T975[df - 1] if df <= len(T975) else 1.96) * statistics.stdev(values) / math.sqrt(len(values))
    return Interval(mean, mean - half, mean + half, len(values))


# -- arguments and the budget plan ---------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The harness's options, checked: a bad value or a budget an arm cannot spend is one line and exit 2."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", help="A running OpenAI-compatible server (default: start transformers serve).")
    parser.add_argument("--model", help="Model name on that server (with --base-url).")
    parser.add_argument("--target", default="arc_challenge", help="Target task (multiple choice). Default: %(default)s.")
    parser.add_argument("--source", default="ai2_science", help="Source task of the transfer arms. Default: %(default)s.")
    parser.add_argument("--arms", default=",".join(ARMS), help="Comma-separated, of: " + ", ".join(ARMS) + ".")
    parser.add_argument("--seeds", default="0,1,2", help="Comma-separated seeds, at least 2. Default: %(default)s.")
    parser.add_argument("--budget", type=int, default=12, help="Rollouts per arm. Default: %(default)s.")
    parser.add_argument("--examples", type=int, default=2, help="Training rows per seed. Default: %(default)s.")
    parser.add_argument("--test-examples", type=int, default=4, help="Held-out rows per seed. Default: %(default)s.")
    parser.add_argument("--steps", type=int, default=1, help="tprompt source-stage steps. Default: %(default)s.")
    parser.add_argument("--candidates", type=int, default=2, help="tprompt candidates per step. Default: %(default)s.")
    parser.add_argument("--top-k", type=int, default=1, help="tprompt prompts transferred. Default: %(default)s.")
    parser.add_argument("--task-max-tokens", type=int, default=96, help="Cap on an answer (tprompt's scorer cap).")
    parser.add_argument("--proposer-max-tokens", type=int, default=96, help="Cap on a proposal, every arm.")
    parser.add_argument("--concurrency", type=int, default=4, help="Requests in flight per arm. Default: %(default)s.")
    parser.add_argument("--request-timeout", type=float, default=600.0, help="Seconds per request (tprompt arms).")
    parser.add_argument("--extra-body", default="{}", help="JSON object sent with every request of every arm, e.g. "
                        '\'{"chat_template_kwargs": {"enable_thinking": false}}\' for Qwen3 on vLLM.')
    parser.add_argument("--venv", type=Path, default=CACHE / "bench-dspy", help="DSPy's own environment.")
    parser.add_argument("--results", type=Path, default=Path("head_to_head.json"), help="Per (arm, seed) results.")
    parser.add_argument("--markdown", action="store_true", help="Print the table as Markdown.")
    parser.add_argument("--report", action="store_true", help="Only print the table of --results (no server, no run).")
    args = parser.parse_args(argv)
    if (args.base_url is None) != (args.model is None):
        parser.error("--base-url and --model go together: give both for a running server, or neither")
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds {args.seeds!r} is not a comma-separated list of integers, e.g. 0,1,2")
    if len(set(args.seeds)) < 2:
        parser.error("--seeds needs at least 2 different seeds for an interval (3 or more recommended)")
    try:
        args.extra_body = json.loads(args.extra_body)
    except json.JSONDecodeError:
        args.extra_body = None
    if not isinstance(args.extra_body, dict):
        parser.error('--extra-body must be a JSON object, e.g. \'{"chat_template_kwargs": {"enable_thinking": false}}\'')
    args.arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in args.arms if a not in ARMS]
    if unknown or not args.arms:
        parser.error(f"--arms: unknown arm {unknown[0] if unknown else '(none)'!r}; choose from {', '.join(ARMS)}")
    for name in ("budget", "examples", "test_examples", "steps", "candidates", "top_k", "task_max_tokens",
                 "proposer_max_tokens", "concurrency"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive number")
    problem = budget_problem(args)
    if problem:
        parser.error(problem)
    return args


def transfer_minimum(args: argparse.Namespace) -> int:
    """Rollouts a transfer arm needs to reach one target step (source stage, transferred prompts, one step)."""
    from tprompt.config import make_config
    from tprompt.graph.rules import full_run_cost

    config = make_config(dict(source_tasks=[args.source], target_task=args.target, proposer="fake", scorer="fake",
                              steps=args.steps, target_steps=1, candidates=args.candidates, top_k=args.top_k,
                              examples=args.examples))
    return full_run_cost(config, 1)


def mipro_trials(budget: int, rows: int) -> int:
    """MIPROv2 trials that spend at most ``budget`` rollouts: the default program and each trial cost ``rows``."""
    return budget // rows - 1


def budget_problem(args: argparse.Namespace) -> str | None:
    """Why ``--budget`` cannot be spent by every chosen arm (one line), or None."""
    if any(a.endswith("+transfer") for a in args.arms) and args.budget < (need := transfer_minimum(args)):
        return (f"--budget {args.budget} is too small for the transfer arms: they need {need} rollouts for the source "
                "stage and one target step; raise --budget or lower --examples/--candidates/--steps/--top-k")
    if "mipro" in args.arms and mipro_trials(args.budget, args.examples) < 1:
        return (f"--budget {args.budget} is too small for MIPROv2: it needs {2 * args.examples} rollouts (the default "
                "program and one trial on the training rows); raise --budget or lower --examples")
    if "gepa" in args.arms and args.budget < args.examples + 2 * min(3, args.examples):
        return (f"--budget {args.budget} is too small for GEPA: it needs {args.examples + 2 * min(3, args.examples)} "
                "rollouts (the seed on the training rows and one reflective minibatch twice); raise --budget")
    return None


def plan_key(args: argparse.Namespace, model: str) -> dict[str, Any]:
    """What makes two invocations' results comparable (a results file with another key is not reused)."""
    keys = ("target", "source", "budget", "examples", "test_examples", "steps", "candidates", "top_k",
            "task_max_tokens", "proposer_max_tokens", "extra_body")
    return {"model": model, **{k: getattr(args, k) for k in keys}}


# -- the rows and the arms -----------------------------------------------------------------------


def rows(task_name: str, n: int, split: str, seed: int) -> list[dict[str, str]]:
    """The ``n`` rows of ``split`` a tprompt run with ``seed`` draws, as DSPy sees them (question with options)."""
    from tprompt.evaluator import load_task
    from tprompt.evaluator.prompts import options_block

    task = load_task(task_name)
    return [{"question": f"{ex.question}\n{options_block(ex.choices)}", "answer": ex.answer}
            for ex in task.sample(n, split=split, seed=seed)]


def tprompt_config(arm: str, seed: int, args: argparse.Namespace, base_url: str, model: str) -> dict[str, Any]:
    """The run config of a tprompt arm: the budget as ``scorer_budget``, enough target steps to spend it."""
    from tprompt.config import make_config
    from tprompt.graph.rules import steps_to_spend

    transfer = arm.endswith("+transfer")
    values: dict[str, Any] = dict(
        name=f"h2h/{arm}/s{seed}", source_tasks=[args.source] if transfer else [], target_task=args.target,
        transfer=transfer, proposer=f"openai:{model}", scorer=f"openai:{model}", base_url=base_url, seed=seed,
        mode="generate", steps=args.steps, candidates=args.candidates, top_k=args.top_k, examples=args.examples,
        test_examples=args.test_examples, proposer_max_tokens=args.proposer_max_tokens,
        concurrency=args.concurrency, request_timeout=args.request_timeout, scorer_budget=args.budget,
        extra_body=args.extra_body,
        proposer_style="reflective" if arm.startswith("reflective") else "paper",
        parent_selection="pareto" if arm.startswith("reflective") else "best",
    )
    values["target_steps"] = steps_to_spend(make_config(values), args.budget)
    make_config(values)  # refused here, not in the child, if invalid
    return values


def run_tprompt(arm: str, seed: int, args: argparse.Namespace, base_url: str, model: str, work: Path) -> ArmResult:
    """One tprompt arm through the CLI (its own database), read back with ``show --json``."""
    db, config = work / f"{arm}-s{seed}.db", work / f"{arm}-s{seed}.json"
    config.write_text(json.dumps(tprompt_config(arm, seed, args, base_url, model)), encoding="utf-8")
    cli = [sys.executable, "-m", "tprompt.cli", "--db", str(db)]
    started = time.perf_counter()
    done = subprocess.run([*cli, "run", "--config", str(config), "--json", "--max-rollouts", str(args.budget)],
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        return ArmResult(arm, seed, None, 0, 0, wall, 0, error=_last_line(done.stderr))
    ran = json.loads(done.stdout)
    shown = subprocess.run([*cli, "show", ran["run_id"], "--json"], capture_output=True, text=True, check=True)
    return tprompt_result(arm, seed, ran, json.loads(shown.stdout), wall)


def tprompt_result(arm: str, seed: int, ran: dict[str, Any], shown: dict[str, Any], wall: float) -> ArmResult:
    """An arm's figures from ``run --json`` and ``show --json``: the best target prompt's test accuracy."""
    if ran["status"] != "completed":
        return ArmResult(arm, seed, None, 0, 0, wall, 0, error=f"run {ran['run_id']} ended {ran['status']}")
    best = next(row for row in ran["table"] if row["role"] == "best_target")
    calls = shown["scorer_calls"]
    return ArmResult(arm, seed, test_score=best["accuracy"], rollouts=calls.get("source", 0) + calls.get("target", 0),
                     proposer_calls=sum(shown["proposer_calls"].values()), wall_s=wall,
                     prompt_chars=len(best["prompt"]), prompt=best["prompt"])


def run_dspy(arm: str, seed: int, args: argparse.Namespace, base_url: str, model: str, python: Path,
             work: Path) -> ArmResult:
    """One DSPy arm in its own environment, on the same rows (its log kept in ``work``)."""
    from tprompt.config import RunConfig

    spec = {"arm": arm, "base_url": base_url, "model": model, "seed": seed, "budget": args.budget,
            "threads": args.concurrency, "instruction": RunConfig.model_fields["original_prompt"].default,
            "train": rows(args.target, args.examples, "train", seed),
            "test": rows(args.target, args.test_examples, "test", seed),
            "task_max_tokens": args.task_max_tokens, "proposer_max_tokens": args.proposer_max_tokens,
            "extra_body": args.extra_body}
    env = {**os.environ, "DSPY_CACHEDIR": tempfile.mkdtemp(prefix="h2h-dspy-cache-")}
    env.pop("PYTHONPATH", None)  # nothing of tprompt's in DSPy's environment
    started = time.perf_counter()
    done = subprocess.run([str(python), str(DSPY_DRIVER)], input=json.dumps(spec), capture_output=True, text=True,
                          env=env)
    wall = time.perf_counter() - started
    (work / f"{arm}-s{seed}.log").write_text(done.stderr, encoding="utf-8")
    if done.returncode != 0:
        return ArmResult(arm, seed, None, 0, 0, wall, 0, error=_last_line(done.stderr))
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return ArmResult(arm, seed, out["test_score"], out["rollouts"], out["proposer_calls"], wall,
                     len(out["prompt"]), prompt=out["prompt"])


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


# -- the table -----------------------------------------------------------------------------------


def summarize(results: Sequence[ArmResult], arms: Sequence[str]) -> list[dict[str, Any]]:
    """Per arm: the interval of the held-out score over the seeds that finished, and mean figures."""
    out = []
    for arm in arms:
        done = [r for r in results if r.arm == arm and r.test_score is not None]
        failed = [r for r in results if r.arm == arm and r.test_score is None]
        row: dict[str, Any] = {"arm": arm, "seeds": len(done), "failed": [f"s{r.seed}: {r.error}" for r in failed]}
        if done:
            row.update(score=interval([r.test_score for r in done if r.test_score is not None]),
                       rollouts=[r.rollouts for r in done], proposer_calls=statistics.fmean(r.proposer_calls for r in done),
                       wall_s=statistics.fmean(r.wall_s for r in done),
                       prompt_chars=statistics.fmean(r.prompt_chars for r in done))
        out.append(row)
    return out


def table(summary: Sequence[dict[str, Any]], *, markdown: bool = False) -> str:
    """The printed table: one line per arm."""
    head = ("arm", "held-out acc (95% CI)", "seeds", "rollouts", "proposer calls", "wall s", "prompt chars")
    lines = []
    for row in summary:
        if not row["seeds"]:
            lines.append((row["arm"], "failed", "0", "-", "-", "-", "-"))
            continue
        s: Interval = row["score"]
        ci = f"{s.mean:.3f} [{s.lo:.3f}, {s.hi:.3f}]" if s.lo is not None and s.hi is not None else f"{s.mean:.3f}"
        used = row["rollouts"]
        lines.append((row["arm"], ci, str(row["seeds"]), f"{min(used)}-{max(used)}" if min(used) != max(used)
                      else str(used[0]), f"{row['proposer_calls']:.1f}", f"{row['wall_s']:.0f}",
                      f"{row['prompt_chars']:.0f}"))
    if markdown:
        return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                         + ["| " + " | ".join(line) + " |" for line in lines])
    widths = [max(len(x[i]) for x in [head, *lines]) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)) for line in [head, *lines])


# -- main ----------------------------------------------------------------------------------------


def load_results(path: Path, key: dict[str, Any]) -> list[ArmResult]:
    """Finished (arm, seed) results of an earlier invocation with the same plan (errors are run again)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return []
    if data.get("plan") != key:
        return []
    return [ArmResult(**r) for r in data.get("results", []) if r.get("test_score") is not None]


def save_results(path: Path, key: dict[str, Any], results: Sequence[ArmResult]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"plan": key, "results": [asdict(r) for r in results]}, indent=1), encoding="utf-8")
    tmp.replace(path)


def serve(args: argparse.Namespace, stack: contextlib.ExitStack) -> tuple[str, str]:
    """(base_url, model name): the given server, or transformers serve on the embedded model (stopped by ``stack``)."""
    if args.base_url:
        return args.base_url, args.model
    from served_server import start_transformers_serve, stop

    from tprompt.models._fetch import smollm2_dir

    log = Path(tempfile.mkdtemp(prefix="h2h-serve-")) / "serve.log"
    proc, base_url = start_transformers_serve(smollm2_dir(), log)
    stack.callback(stop, proc)
    print(f"transformers serve on {base_url} (log {log})", file=sys.stderr, flush=True)
    return base_url, str(smollm2_dir())


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    from _bench import cpu_flags

    if args.report:
        try:
            data = json.loads(args.results.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise SystemExit(f"--report: cannot read {args.results} ({exc}); run the harness first") from exc
        results = [ArmResult(**r) for r in data["results"]]
        print(f"{data['plan']}")
        print(table(summarize(results, args.arms), markdown=args.markdown))
        return
    # SIGTERM ends the harness as Ctrl-C does: the server it started is stopped, the results so far are kept.
    signal.signal(signal.SIGTERM, _interrupt)
    python = own_python(args.venv, probe="dspy, optuna", installs=[["dspy", "optuna"]], what="DSPy") \
        if set(args.arms) & set(DSPY_ARMS) else None
    with contextlib.ExitStack() as stack:
        base_url, model = serve(args, stack)
        key = plan_key(args, model if args.base_url else "smollm2-135m-instruct (transformers serve)")
        results = load_results(args.results, key)
        work = Path(tempfile.mkdtemp(prefix="h2h-runs-"))
        print(f"run databases and DSPy logs in {work}", file=sys.stderr, flush=True)
        for seed in args.seeds:  # seeds outermost: a partial table has whole seeds
            for arm in args.arms:
                if any(r.arm == arm and r.seed == seed for r in results):
                    continue
                if arm in DSPY_ARMS:
                    assert python is not None
                    result = run_dspy(arm, seed, args, base_url, model, python, work)
                else:
                    result = run_tprompt(arm, seed, args, base_url, model, work)
                results.append(result)
                save_results(args.results, key, results)
                what = f"acc {result.test_score:.3f}" if result.test_score is not None else f"FAILED: {result.error}"
                print(f"seed {seed} {arm:<20} {what}, {result.rollouts} rollouts, {result.proposer_calls} proposer "
                      f"calls, {result.wall_s:.0f} s", file=sys.stderr, flush=True)
    print(f"{args.target} ({args.source} as the transfer source), {key['model']}, budget {args.budget} rollouts, "
          f"{args.examples} training rows, {args.test_examples} test rows, seeds {args.seeds}")
    print(f"machine: {os.cpu_count()} cores, {cpu_flags()}")
    print(table(summarize(results, args.arms), markdown=args.markdown))


if __name__ == "__main__":
    main()
