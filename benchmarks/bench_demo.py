"""Wall time of the demo, ``tprompt run`` with no arguments, on the embedded model (issue 13). Prints figures.

Run: python benchmarks/bench_demo.py [--repeat 1] [--baseline DIR]
As an AVX2-only CPU on an AVX-512 one: prefix the ISA caps of ``bench_precision.py`` (the default
precision follows them: fp16 weights there, bf16 on a CPU with native bf16).

Each run starts a new process in an empty database (the model already
converted and cached: "warm"). With ``--baseline DIR`` (a directory whose
``tprompt`` is an older checkout, e.g. ``DIR/tprompt -> /path/to/worktree``)
the same demo runs with that code too, interleaved, and the ratio of the
medians is printed, then the same for CPU time (user + system of each run's process).
A run takes minutes: keep the machine otherwise quiet.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import medians, timed_cli_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--baseline", help="a directory whose 'tprompt' is an older checkout")
    args = parser.parse_args()
    from bench_precision import cpu_flags

    from tprompt.config import default_precision

    print(f"machine: {cpu_flags()}; default precision {default_precision('smollm2')}; "
          f"1-min load average {os.getloadavg()[0]:.2f}", flush=True)
    variants = [("now", {}), *([("baseline", {"PYTHONPATH": args.baseline})] if args.baseline else [])]
    times: dict[str, list[float]] = {name: [] for name, _ in variants}
    cpu: dict[str, list[float]] = {name: [] for name, _ in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            for name, extra in variants:  # interleaved
                db = Path(tmp) / f"{name}-{i}.db"
                env = {**os.environ, **extra, "TPROMPT_DB": str(db)}
                wall, used = timed_cli_cpu(["run"], env, tmp)
                times[name].append(wall)
                cpu[name].append(used)
                print(f"  {name}: {wall:.1f} s wall, {used:.1f} s CPU (load {os.getloadavg()[0]:.2f})", flush=True)
    print(medians(f"tprompt run (the demo), medians of {args.repeat}, wall:", times, 1))
    print(medians(f"tprompt run (the demo), medians of {args.repeat}, CPU:", cpu, 1))


if __name__ == "__main__":
    main()
