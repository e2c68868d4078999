"""Answer agreement and speed of the embedded model at each precision against fp32 (issue 23).

Run: python benchmarks/bench_precision.py [--n 200] [--tasks arc_challenge,medmcqa,pubmedqa]
     [--generate 32] [--tokens 64] [--precisions fp16,int8,bf16] [--repeat 1] [--json]
As an AVX2-only CPU on an AVX-512 one: ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
     FBGEMM_ENABLE_INSTRUCTIONS=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 python benchmarks/bench_precision.py ...

For each task, the first ``--n`` test questions are scored in logprob mode
(the scorer's own requests, as ``--mode logprob`` sends them) at fp32 and at
each other precision; printed per task: argmax agreement with fp32, the
largest and the median absolute option-probability difference. Then
``--generate`` ARC-Challenge questions are decoded greedily (``--mode
generate`` requests, ``--tokens`` new tokens at most) and the greedy texts
identical to fp32's are counted. Speed: examples/s of the logprob scoring
and generated tokens/s of the decoding, each precision's ratio to fp32,
measured in this one run (precisions interleaved per repeat; medians).
bf16 is skipped on a CPU without native bf16 matmul. The machine line names the CPU's flags and the
instruction set torch's kernels ran at (see ``ISA_CAPS``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _bench import cpu_flags as machine_flags  # noqa: E402  (found through HERE)

PROMPT = "Let's think step by step."


def cpu_flags() -> str:
    """The CPU's model name and the flags that decide the fast paths (AVX2, AVX-512, VNNI, BF16, AMX)."""
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
    return f"{machine_flags(wanted)}, {os.cpu_count()} cores; {kernels_used()}"


#: Environment variables that cap the instruction set of torch's own kernels, oneDNN, fbgemm and MKL:
#: all four set to AVX2 make an AVX-512 machine compute as an AVX2-only one does (ATen's CPU capability
#: alone leaves oneDNN, fbgemm (the int8 and fp16 matmuls) and MKL (the fp32 ones) at AVX-512).
ISA_CAPS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "FBGEMM_ENABLE_INSTRUCTIONS", "MKL_ENABLE_INSTRUCTIONS")


def kernels_used() -> str:
    """The instruction set torch's kernels run at, and any of :data:`ISA_CAPS` set in the environment."""
    import torch

    caps = ", ".join(f"{k}={os.environ[k]}" for k in ISA_CAPS if k in os.environ)
    return f"torch kernels {torch.backends.cpu.get_cpu_capability()}" + (f" ({caps})" if caps else " (no ISA cap set)")


def option_requests(task_name: str, n: int):
    from tprompt.evaluator.scoring import _messages, _options
    from tprompt.evaluator.tasks import load_task
    from tprompt.models import OptionsRequest

    task = load_task(task_name)
    return [OptionsRequest(messages=_messages(PROMPT, ex, task, True), options=_options(ex, task)) for ex in task.test[:n]]


def argmax(probs) -> int:
    return max(range(len(probs)), key=probs.__getitem__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--tasks", default="arc_challenge,medmcqa,pubmedqa")
    parser.add_argument("--generate", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--precisions", default="fp16,int8,bf16")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs of each precision; medians")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from bench_decode import requests as generate_requests

    from tprompt._cpu import bf16_native
    from tprompt.models import get_model

    others = [p for p in args.precisions.split(",") if p and p != "fp32"]
    if "bf16" in others and not bf16_native():
        print("bf16 skipped: this CPU has no native bf16 matmul")
        others.remove("bf16")
    precisions = ["fp32", *others]
    backends = {p: get_model("smollm2", precision=p) for p in precisions}
    tasks = {name: option_requests(name, args.n) for name in args.tasks.split(",")}
    gen = generate_requests(args.generate, args.tokens)
    for b in backends.values():  # load and warm up
        b.option_probs(next(iter(tasks.values()))[:4])
        b.generate(gen[:2])
    probs: dict[str, dict[str, list]] = {p: {} for p in precisions}
    texts: dict[str, list[str]] = {}
    score_s: dict[str, list[float]] = {p: [] for p in precisions}
    decode_s: dict[str, list[float]] = {p: [] for p in precisions}
    produced: dict[str, int] = {}
    for _ in range(max(1, args.repeat)):
        for p in precisions:  # interleaved: a machine that changes speed affects all alike
            t0 = time.perf_counter()
            for name, reqs in tasks.items():
                probs[p][name] = [pr for pr, _ in backends[p].option_probs(reqs)]
            score_s[p].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            out = backends[p].generate(gen)
            decode_s[p].append(time.perf_counter() - t0)
            texts[p] = [t for t, _, _ in out]
            produced[p] = sum(k for _, _, k in out)
    scored = sum(len(r) for r in tasks.values())
    figures: dict = {"machine": cpu_flags(), "load_average_1min": round(os.getloadavg()[0], 2), "n": args.n,
                     "generate": args.generate, "tokens": args.tokens, "precisions": {}}
    for p in precisions:
        entry: dict = {
            "scoring_examples_per_s": round(scored / statistics.median(score_s[p]), 2),
            "decode_tokens_per_s": round(produced[p] / statistics.median(decode_s[p]), 1),
            "tasks": {},
        }
        if p != "fp32":
            for name in tasks:
                ref, got = probs["fp32"][name], probs[p][name]
                diffs = [abs(a - b) for r, g in zip(ref, got) for a, b in zip(r, g)]
                entry["tasks"][name] = {
                    "agreement": round(sum(argmax(r) == argmax(g) for r, g in zip(ref, got)) / len(ref), 4),
                    "questions": len(ref), "max_prob_diff": round(max(diffs), 4),
                    "median_prob_diff": round(statistics.median(diffs), 5),
                }
            entry["identical_texts"] = sum(a == b for a, b in zip(texts["fp32"], texts[p]))
        figures["precisions"][p] = entry
    base = figures["precisions"]["fp32"]
    for p in others:
        entry = figures["precisions"][p]
        entry["scoring_vs_fp32"] = round(entry["scoring_examples_per_s"] / base["scoring_examples_per_s"], 2)
        entry["decode_vs_fp32"] = round(entry["decode_tokens_per_s"] / base["decode_tokens_per_s"], 2)
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"SmolLM2-135M-Instruct, {figures['machine']}; 1-min load average {figures['load_average_1min']} (shared machine)")
    print(f"logprob scoring: {args.n} test questions of {', '.join(tasks)}; greedy decoding: {args.generate} ARC questions, "
          f"up to {args.tokens} tokens")
    for p in precisions:
        entry = figures["precisions"][p]
        ratio = "" if p == "fp32" else f" ({entry['scoring_vs_fp32']:.2f}x fp32)"
        dratio = "" if p == "fp32" else f" ({entry['decode_vs_fp32']:.2f}x fp32)"
        print(f"  {p}: scoring {entry['scoring_examples_per_s']:.2f} examples/s{ratio}, decoding "
              f"{entry['decode_tokens_per_s']:.1f} tokens/s{dratio}")
        for name, t in entry["tasks"].items():
            print(f"    {name:16} argmax agreement {t['agreement']:.1%} of {t['questions']}, option probability "
                  f"difference max {t['max_prob_diff']:.3f}, median {t['median_prob_diff']:.4f}")
        if p != "fp32":
            print(f"    greedy texts identical to fp32: {entry['identical_texts']}/{args.generate}")


if __name__ == "__main__":
    main()
