"""Scoring throughput against a served model: examples/s at concurrency 1, 4 and 16.

Starts ``transformers serve`` on the embedded model's local directory (as the
tests do; ``--continuous-batching`` passes that flag on), or uses a running
server given by ``--base-url`` and ``--model``. Each concurrency level scores
the same examples in generate mode with a fresh in-memory cache (every
request goes to the server), ``--repeats`` times; the median is reported with
its ratio to sequential (concurrency 1).

    python benchmarks/bench_served.py [--examples 32] [--repeats 3] [--continuous-batching]
    python benchmarks/bench_served.py --base-url http://127.0.0.1:8000/v1 --model Qwen/Qwen2.5-7B-Instruct
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the test suite's server starter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", help="A running OpenAI-compatible server (default: start transformers serve).")
    parser.add_argument("--model", help="Model name on that server.")
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--levels", default="1,4,16")
    parser.add_argument("--continuous-batching", action="store_true", help="Start the server with continuous batching.")
    args = parser.parse_args()

    from tprompt.agents import Recorder
    from tprompt.agents.api import ApiBackend
    from tprompt.evaluator import load_task, score_prompt

    proc = None
    if args.base_url:
        base_url, model_name = args.base_url, args.model
        if not model_name:
            parser.error("--model is needed with --base-url")
    else:
        from served_server import start_transformers_serve, stop
        from tprompt.agents._fetch import smollm2_dir

        model_dir = smollm2_dir()
        log = Path(tempfile.mkdtemp()) / "serve.log"
        extra = ("--continuous-batching",) if args.continuous_batching else ()
        proc, base_url = start_transformers_serve(model_dir, log, extra=extra)
        model_name = str(model_dir)
    try:
        task = load_task("arc_challenge")
        rows = task.sample(args.examples, split="test", seed=0)
        levels = [int(x) for x in args.levels.split(",")]
        print(f"server {base_url} ({'continuous batching' if args.continuous_batching else 'as started'}), "
              f"{len(rows)} arc_challenge examples, generate mode, {os.cpu_count()} cores, "
              f"load average {os.getloadavg()[0]:.2f}")
        backend = ApiBackend("openai", model_name, spec=f"openai:{model_name}", base_url=base_url)
        # One warm-up request: the first pays for lazy initialisation in the server.
        with Recorder(":memory:") as rec:
            score_prompt("Warm up.", rows[:1], task=task, model=backend, recorder=rec)
        medians: dict[int, float] = {}
        for level in levels:
            backend.concurrency = level
            rates = []
            for repeat in range(args.repeats):
                with Recorder(":memory:") as rec:
                    started = time.perf_counter()
                    score_prompt(f"Answer the question. (run {repeat})", rows, task=task, model=backend, recorder=rec,
                                 batch_size=max(8, level))
                    rates.append(len(rows) / (time.perf_counter() - started))
                    assert rec.model_calls == len(rows)
            medians[level] = statistics.median(rates)
            print(f"concurrency {level:>2}: {medians[level]:6.2f} examples/s (median of {args.repeats}: "
                  + ", ".join(f"{r:.2f}" for r in rates) + ")")
        base = medians[levels[0]]
        print("ratio to sequential: " + ", ".join(f"{lv}: {medians[lv] / base:.2f}x" for lv in levels))
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    finally:
        if proc is not None:
            stop(proc)


if __name__ == "__main__":
    main()
