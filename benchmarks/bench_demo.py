"""Wall time of the demo, ``tprompt run`` with no arguments, on the embedded model (issue 13). Prints figures.

Run: python benchmarks/bench_demo.py [--repeat 1] [--baseline DIR]

Each run starts a new process in an empty database (the model already
converted and cached: "warm"). With ``--baseline DIR`` (a directory whose
``tprompt`` is an older checkout, e.g. ``DIR/tprompt -> /path/to/worktree``)
the same demo runs with that code too, interleaved, and the ratio of the
medians is printed. A run takes minutes: keep the machine otherwise quiet.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import medians, timed_cli


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--baseline", help="a directory whose 'tprompt' is an older checkout")
    args = parser.parse_args()
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load {os.getloadavg()[0]:.2f}")
    variants = [("now", {}), *([("baseline", {"PYTHONPATH": args.baseline})] if args.baseline else [])]
    times: dict[str, list[float]] = {name: [] for name, _ in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            for name, extra in variants:  # interleaved
                db = Path(tmp) / f"{name}-{i}.db"
                env = {**os.environ, **extra, "TPROMPT_DB": str(db)}
                times[name].append(timed_cli(["run"], env, tmp))
                print(f"  {name}: {times[name][-1]:.1f} s", flush=True)
    print(medians(f"tprompt run (the demo), medians of {args.repeat}:", times, 1))


if __name__ == "__main__":
    main()
