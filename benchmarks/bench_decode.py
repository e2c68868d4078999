"""Decoding speed of the embedded model (issue 13). Prints figures; not a test.

Run: python benchmarks/bench_decode.py [--n 16] [--tokens 96] [--repeat 3] [--baseline DIR] [--json]

``--n`` ARC-Challenge questions are answered greedily, ``--tokens`` new
tokens at most, as ``--mode generate`` sends them (the scorer's system prompt
and one question per request), in one ``generate`` call. Printed, medians of
``--repeat`` runs, all in this one run of the benchmark:

* tprompt's ``TransformersBackend.generate`` (the local engine) (this checkout);
* with ``--baseline DIR`` (a directory whose ``tprompt`` is an older
  checkout, e.g. ``DIR/tprompt -> /path/to/old/worktree``), the same call
  in that code, run in a subprocess, and whether its texts are identical;
* stock transformers: ``model.generate`` on the same prompts, left-padded,
  all rows in one batch, greedy, on every core.

Tokens/s counts generated tokens (up to the first stop or end of text) over
wall time. Runs are interleaved (this, baseline, stock, this, ...) so a
machine that changes speed affects all alike.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

#: The instruction the default demo starts from.
PROMPT = "Let's think step by step."


def requests(n: int, tokens: int):
    """The scorer's own requests (``--mode generate``) for the first ``n`` ARC-Challenge test questions."""
    from tprompt.evaluator.scoring import _messages
    from tprompt.evaluator.tasks import load_task
    from tprompt.models import ChatRequest

    task = load_task("arc_challenge")
    return [ChatRequest(messages=_messages(PROMPT, ex, task, False), max_tokens=tokens, temperature=0.0) for ex in task.test[:n]]


def run_tprompt(backend, reqs) -> tuple[float, list[str], int]:
    t0 = time.perf_counter()
    results = backend.generate(reqs)
    return time.perf_counter() - t0, [text for text, _, _ in results], sum(n for _, _, n in results)


def run_stock(backend, reqs) -> tuple[float, int]:
    """transformers' own batched greedy ``generate`` on the same prompts."""
    import torch

    engine = backend.engine
    tok = engine.tokenizer
    tok.padding_side = "left"
    texts = [engine.render(r.messages) for r in reqs]
    batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    limit = max(r.max_tokens for r in reqs)
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = engine.model.generate(**batch, max_new_tokens=limit, do_sample=False, pad_token_id=engine.pad_id)
    elapsed = time.perf_counter() - t0
    new = out[:, batch["input_ids"].shape[1]:]
    produced = 0
    for row in new.tolist():
        for t in row:
            if t in engine.eos_ids:
                break
            produced += 1
    return elapsed, produced


def child(args) -> None:
    """One timed run of this checkout's generate, as JSON on stdout (used for --baseline)."""
    from tprompt.models import get_model

    backend = get_model("smollm2")
    reqs = requests(args.n, args.tokens)
    backend.generate(reqs[:2])
    results = []
    for _ in range(args.repeat):
        elapsed, texts, produced = run_tprompt(backend, reqs)
        results.append({"s": elapsed, "texts": texts, "tokens": produced})
    print(json.dumps(results))


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=96)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="a directory whose tprompt is an older checkout")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--precision", default="fp32", help="fp32, bf16, fp16 or int8 (per-precision ratios in one run: bench_precision.py)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    from tprompt.models import get_model

    backend = get_model("smollm2", precision=args.precision)
    reqs = requests(args.n, args.tokens)
    backend.generate(reqs[:2])  # warm up
    rows: dict[str, list] = {"tprompt": [], "stock": [], "baseline": []}
    texts_now = None
    base_texts = None
    for _ in range(args.repeat):
        elapsed, texts, produced = run_tprompt(backend, reqs)
        texts_now = texts
        rows["tprompt"].append((elapsed, produced))
        if args.baseline:
            env = dict(os.environ, PYTHONPATH=str(args.baseline))
            out = subprocess.run(
                [sys.executable, __file__, "--child", "--n", str(args.n), "--tokens", str(args.tokens), "--repeat", "1"],
                env=env, capture_output=True, text=True, check=True, cwd=str(args.baseline),
            )
            result = json.loads(out.stdout)[0]
            base_texts = result["texts"]
            rows["baseline"].append((result["s"], result["tokens"]))
        rows["stock"].append(run_stock(backend, reqs))

    from bench_precision import cpu_flags

    figures = {"machine": cpu_flags(), "load_average_1min": round(os.getloadavg()[0], 2), "n": args.n, "tokens": args.tokens}
    for name, runs in rows.items():
        if not runs:
            continue
        s = median([r[0] for r in runs])
        produced = median([r[1] for r in runs])
        figures[name] = {"median_s": round(s, 2), "runs_s": [round(r[0], 2) for r in runs], "tokens": produced,
                         "tokens_per_s": round(produced / s, 1)}
    if base_texts is not None:
        figures["identical_texts"] = sum(a == b for a, b in zip(texts_now, base_texts))
        figures["speedup_vs_baseline"] = round(figures["tprompt"]["tokens_per_s"] / figures["baseline"]["tokens_per_s"], 2)
    figures["speedup_vs_stock"] = round(figures["tprompt"]["tokens_per_s"] / figures["stock"]["tokens_per_s"], 2)
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"greedy decoding, {args.n} ARC questions, up to {args.tokens} new tokens, SmolLM2-135M {args.precision}, {figures['machine']}; "
          f"1-min load average {figures['load_average_1min']}")
    for name in ("tprompt", "baseline", "stock"):
        if name in figures:
            f = figures[name]
            print(f"  {name:9} {f['tokens_per_s']:7.1f} tokens/s  (median {f['median_s']:.2f} s of {f['runs_s']}, {f['tokens']} tokens)")
    if "speedup_vs_baseline" in figures:
        print(f"  this checkout vs baseline: {figures['speedup_vs_baseline']:.2f}x; identical texts: {figures['identical_texts']}/{args.n}")
    print(f"  this checkout vs stock transformers generate: {figures['speedup_vs_stock']:.2f}x")


if __name__ == "__main__":
    main()
