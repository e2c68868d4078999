"""Opening a long run in the TUI vs one fold of it (issue 12, item 9). Prints figures; not a test.

Run: python benchmarks/bench_tui_open.py [--events 40000] [--repeat 3]

"fold" is one ``log.state(run)``; "follower" is what the run screen does when it opens a
run (``RunFollower.poll`` over the whole history, replay checkpoints included); "per-event"
is the way the follower read a run before (one ``apply`` per event), kept here as the before
figure of the same run on the same machine. Target: follower <= 1.5 x fold.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_store import fill

from tprompt.stores import EventLog, RunState, apply
from tprompt.tui.data import RunFollower


def per_event(log: EventLog, run_id: str) -> None:
    state = RunState(run_id=run_id)
    for se in log.events(run_id):
        state = apply(state, se)


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-per-event", action="store_true", help="skip the (slow) before figure")
    args = parser.parse_args()
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        log = EventLog(Path(tmp) / "open.db")
        run_id = fill(log, args.events)
        fold_s = statistics.median(timed(lambda: log.state(run_id)) for _ in range(args.repeat))
        follow_s = statistics.median(timed(lambda: RunFollower(log, run_id).poll()) for _ in range(args.repeat))
        print(f"{args.events} events: one fold {fold_s:.3f} s, follower open {follow_s:.3f} s "
              f"({follow_s / fold_s:.2f} x fold; target <= 1.5 x)")
        if not args.skip_per_event:
            before_s = statistics.median(timed(lambda: per_event(log, run_id)) for _ in range(args.repeat))
            print(f"before (one apply per event): {before_s:.3f} s ({before_s / fold_s:.1f} x fold, "
                  f"{before_s / follow_s:.1f} x the follower now)")


if __name__ == "__main__":
    main()
