"""A fully cached evaluation vs the first one (issue 12, item 8). Prints figures; not a test.

Run: python benchmarks/bench_cached_eval.py [--examples 16] [--repeat 3] [--baseline DIR]

Each round evaluates one prompt on the embedded model twice on a fresh database:
the first time pays the model calls, the second finds every answer in the cache.
Before models loaded lazily, the second still loaded the weights. With
``--baseline DIR`` (a directory whose ``tprompt`` is an older checkout) the same is
measured with that code, interleaved. Medians of ``--repeat`` rounds.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def eval_once(db: Path, examples: int, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "tprompt.cli", "--db", str(db), "eval", "--task", "arc_challenge", "--examples",
         str(examples), "--model", "smollm2", "--mode", "logprob", "--prompt", "Answer with the letter.", "--json"],
        env=env, cwd=db.parent, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline")
    args = parser.parse_args()
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load {os.getloadavg()[0]:.2f}")
    variants = {"now": dict(os.environ)}
    if args.baseline:
        variants["baseline"] = {**os.environ, "PYTHONPATH": args.baseline}
    figures: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeat):
            for name, env in variants.items():
                db = Path(tmp) / f"{name}-{r}.db"
                figures[name][0].append(eval_once(db, args.examples, env))
                figures[name][1].append(eval_once(db, args.examples, env))
    for name, (first, cached) in figures.items():
        f, c = statistics.median(first), statistics.median(cached)
        print(f"{name:8s}: first {f:.2f} s, cached repeat {c:.2f} s, ratio {c / f:.2f} (target <= 0.2)")


if __name__ == "__main__":
    main()
