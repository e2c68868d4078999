"""Scorer throughput of the embedded model on ARC-Challenge multiple-choice questions.

Compares, on the same examples and the same prompt, in one run:

* fast path: ``option_probs`` (one forward pass per batch, ``logits_to_keep``,
  the shared prompt prefix's KV cache computed once, batches grouped by length);
* naive: one ``generate`` call of 8 tokens per example, then parse the letter.

It also measures this machine's fp32 matmul FLOP/s with ``torch.matmul`` and
reports the share of it the fast path reaches on the tokens it must process
(the tokens after the shared prefix, plus the prefix once). The matmul is
timed on one thread and on every core, before and after the fast path, and
the best round is the peak: on a machine shared with other processes the
FLOP/s on offer changes from second to second, and one thread can then beat
all of them (their threads wait for each other's busy cores).

Run: /work/venv/bin/python benchmarks/bench_scorer.py [--n 48] [--repeat 3] [--json]
(about 1-2 minutes on a 2-core machine, model load included).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA_CANDIDATES = (
    HERE.parent / "evaluator" / "data" / "arc_challenge" / "test.jsonl",
    HERE.parent.parent / "shared" / "datasets" / "arc_challenge" / "test.jsonl",
)
SYSTEM = (
    "You are an expert science teacher. Read the multiple-choice question, think about which option is "
    "correct, and reply with the letter of the single best option."
)
LETTERS = "ABCDEFGH"


def load_examples(n: int) -> list[dict]:
    for path in DATA_CANDIDATES:
        if path.is_file():
            rows = [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]
            return rows[:n]
    raise SystemExit(f"ARC-Challenge data not found in {[str(p) for p in DATA_CANDIDATES]}")


def user_text(example: dict) -> str:
    choices = "\n".join(f"{LETTERS[i]}) {c}" for i, c in enumerate(example["choices"]))
    return f"{example['question']}\n{choices}"


def matmul_rounds(threads: int, size: int = 1024, seconds: float = 1.5) -> list[float]:
    """fp32 matmul FLOP/s of this machine, one figure per timed round of 4 matmuls."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.matmul(a, b)
    rounds = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        for _ in range(4):
            torch.matmul(a, b)
        rounds.append(4 * 2 * size**3 / (time.perf_counter() - t0))
    return rounds


def peak_rounds(seconds: float = 2.0) -> list[tuple[float, int]]:
    """(FLOP/s, threads) of matmul rounds on one thread and on every core; torch's threads restored after."""
    import torch

    before = torch.get_num_threads()
    counts = sorted({1, os.cpu_count() or 1})
    rounds = [(r, threads) for threads in counts for r in matmul_rounds(threads, seconds=seconds / len(counts))]
    torch.set_num_threads(before)
    return rounds


def model_flops(model, stats) -> float:
    """FLOPs of the forward passes counted in ``stats`` (matmuls; norms and activations are extra work).

    Linear layers 2 x params per token processed (the shared prefix once),
    attention 4 x width per (token, attended token) pair that the causal
    masks allow, and the vocabulary projection for the rows that got one
    (2 x hidden per option logit taken without it).
    """
    config = model.model.config
    dense = sum(p.numel() for name, p in model.model.named_parameters() if "embed" not in name and p.dim() == 2)
    attn_width = config.num_attention_heads * getattr(config, "head_dim", config.hidden_size // config.num_attention_heads)
    per_token = 2 * dense
    attention = 4 * config.num_hidden_layers * attn_width * stats.context_tokens  # QK^T and AV
    logits = 2 * config.hidden_size * (config.vocab_size * stats.logit_rows + getattr(stats, "option_logits", 0))
    return per_token * stats.tokens + attention + logits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=48, help="examples (the same for both ways)")
    parser.add_argument("--repeat", type=int, default=3, help="fast-path runs; the median time is reported")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--precision", default="fp32", help="fp32, bf16 or int8 (per-precision ratios in one run: bench_precision.py)")
    args = parser.parse_args()

    from tprompt.models import ChatRequest, OptionsRequest, get_model
    from tprompt.models.local.threads import cpu_threads

    examples = load_examples(args.n + 4)
    warmup, examples = examples[:4], examples[4:]
    t0 = time.perf_counter()
    backend = get_model("smollm2", precision=args.precision)
    load_s = time.perf_counter() - t0

    def options_request(ex: dict) -> OptionsRequest:
        return OptionsRequest(
            messages=(("system", SYSTEM), ("user", user_text(ex))),
            options=tuple(LETTERS[: len(ex["choices"])]),
        )

    backend.option_probs([options_request(ex) for ex in warmup])
    threads = cpu_threads()
    load_before = os.getloadavg()[0]
    rounds = peak_rounds()

    # Fast path: every example in one call, as the scorer sends them; the
    # median of a few runs, as other processes may take the cores for a while.
    times = []
    for _ in range(max(1, args.repeat)):
        backend.engine.stats.reset()
        t0 = time.perf_counter()
        scored = backend.option_probs([options_request(ex) for ex in examples])
        times.append(time.perf_counter() - t0)
    fast_s = sorted(times)[len(times) // 2]
    stats = backend.engine.stats
    fast_flops = model_flops(backend.engine.model, stats) / fast_s
    fast_threads = dict(stats.threads)
    load_fast = os.getloadavg()[0]
    # Measured on both sides of the fast path: on a machine shared with other
    # processes the FLOP/s on offer changes from second to second.
    rounds += peak_rounds()
    peak, peak_threads = max(rounds)
    same = sorted(r for r, t in rounds if t == peak_threads)
    typical = same[len(same) // 2]
    fast_correct = sum(
        LETTERS[max(range(len(p)), key=p.__getitem__)] == ex["answer"] for (p, _), ex in zip(scored, examples)
    )
    prompt_tokens = sum(pt for _, pt in scored)
    fast_tokens, padded, forwards = stats.tokens, stats.padded_tokens, stats.forward_calls

    # Naive: one generate call per example, then parse the letter.
    backend.generate([ChatRequest(messages=options_request(warmup[0]).messages, max_tokens=8)])
    t0 = time.perf_counter()
    naive_correct = parsed = 0
    for ex in examples:
        text, _, _ = backend.generate([ChatRequest(messages=options_request(ex).messages, max_tokens=8)])[0]
        match = re.search(r"\b([A-H])\b", text)
        parsed += bool(match)
        naive_correct += bool(match) and match.group(1) == ex["answer"]
    naive_s = time.perf_counter() - t0

    n = len(examples)
    figures = {
        "examples": n,
        "threads": threads,
        "fast_path_threads": {str(k): v for k, v in sorted(fast_threads.items())},
        "load_average_1min": round(os.getloadavg()[0], 2),
        "load_average_before_fast": round(load_before, 2),
        "load_average_after_fast": round(load_fast, 2),
        "cpu_count": os.cpu_count(),
        "model_load_s": round(load_s, 2),
        "fast_examples_per_s": round(n / fast_s, 2),
        "naive_examples_per_s": round(n / naive_s, 2),
        "speedup": round(naive_s / fast_s, 2),
        "fast_s": round(fast_s, 2),
        "fast_s_runs": [round(t, 2) for t in times],
        "naive_s": round(naive_s, 2),
        "prompt_tokens_total": prompt_tokens,
        "tokens_processed": fast_tokens,
        "tokens_padded": padded,
        "forward_passes": forwards,
        "matmul_gflops": round(peak / 1e9, 1),
        "matmul_peak_threads": peak_threads,
        "fast_path_gflops": round(fast_flops / 1e9, 1),
        "share_of_flop_bound": round(fast_flops / peak, 3),
        "matmul_gflops_median": round(typical / 1e9, 1),
        "share_of_median_matmul": round(fast_flops / typical, 3),
        "fast_accuracy": round(fast_correct / n, 3),
        "naive_accuracy": round(naive_correct / n, 3),
        "naive_parsed": round(parsed / n, 3),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    used = ", ".join(f"{v} on {k} thread{'s' if k != '1' else ''}" for k, v in figures["fast_path_threads"].items())
    print(f"ARC-Challenge, {n} questions, SmolLM2-135M-Instruct {args.precision}, {os.cpu_count()} cores"
          f" (fast-path passes: {used}; 1-min load average {figures['load_average_before_fast']} before,"
          f" {figures['load_average_after_fast']} after)")
    print(f"  fast path (option probs): {figures['fast_examples_per_s']:7.2f} examples/s  (median {fast_s:.1f} s"
          f" of {figures['fast_s_runs']}, "
          f"{forwards} forward passes, {fast_tokens} tokens processed of {prompt_tokens} prompt tokens, "
          f"{padded} with padding)")
    print(f"  naive (generate 8 + parse): {figures['naive_examples_per_s']:5.2f} examples/s  ({naive_s:.1f} s)")
    print(f"  speedup: {figures['speedup']:.2f}x   (target >= 2.5x)")
    print(f"  fp32 matmul peak: {figures['matmul_gflops']:.1f} GFLOP/s on {peak_threads} thread(s); fast path: {figures['fast_path_gflops']:.1f}"
          f" GFLOP/s = {100 * figures['share_of_flop_bound']:.0f}% of the FLOP bound   (target >= 70%)")
    print(f"  (median matmul round {figures['matmul_gflops_median']:.1f} GFLOP/s: fast path at"
          f" {100 * figures['share_of_median_matmul']:.0f}% of it; 1-min load average {figures['load_average_1min']})")
    print(f"  accuracy: fast {figures['fast_accuracy']:.3f}, naive {figures['naive_accuracy']:.3f}"
          f" (naive answers parsed: {figures['naive_parsed']:.3f})")


if __name__ == "__main__":
    main()
