"""Reading a long run from the command line and the TUI (issue 13). Prints figures; not a test.

Run: python benchmarks/bench_long_runs.py [--events 40000] [--repeat 3] [--baseline DIR]

Each variant (this checkout, and with ``--baseline DIR`` the older checkout
``DIR/tprompt``) writes its own database with its own code: 40 short runs of
1,000 events and then one run of ``--events`` events, appended in steps of 11
events as the graph writes them (through the writer's summary where the code
has one). Then, in whole processes, medians of ``--repeat``, interleaved:

* ``tprompt runs`` on the database with only the short runs, and with the long run added;
* ``tprompt events LONG`` as a table and as ``--json``;
* ``tprompt ui LONG --screenshot`` (the TUI opened on the long run, rendered once).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_startup import timed  # noqa: E402  (one whole `tprompt` process, timed)


def make(path: Path, events: int, short_runs: int) -> str:
    """Write the database; returns the long run's id."""
    from bench_store import created, stream

    from tprompt.stores import EventLog, fold

    try:
        from tprompt.stores.summary import summarize
    except ImportError:  # code from before run summaries
        summarize = None

    def fill(log: EventLog, n: int) -> str:
        run = log.create_run(created())
        state = log.state(run)
        todo = stream(n - 1)
        for i in range(0, len(todo), 11):
            if summarize is None:
                log.append(run, todo[i : i + 11])
                continue
            after = []

            def summary(stored, state=state, after=after):
                after.append(fold(stored, state=state))
                return after[0].last_seq, summarize(after[0], "").to_json()

            log.append(run, todo[i : i + 11], summary=summary)
            state = after[0]
        return run

    with EventLog(path) as log:
        for _ in range(short_runs):
            fill(log, 1_000)
        return fill(log, events) if events else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--short-runs", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", help="a directory whose 'tprompt' is an older checkout")
    parser.add_argument("--make", nargs=3, help=argparse.SUPPRESS)  # internal: PATH EVENTS SHORT_RUNS
    args = parser.parse_args()
    if args.make:
        print(make(Path(args.make[0]), int(args.make[1]), int(args.make[2])))
        return
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        variants = {}
        for name, extra in [("now", {}), *([("baseline", {"PYTHONPATH": args.baseline})] if args.baseline else [])]:
            env = {**os.environ, **extra, "COLUMNS": "160"}
            dbs = {}
            for kind, n in (("short", 0), ("long", args.events)):
                db = Path(tmp) / f"{name}-{kind}.db"
                made = subprocess.run([sys.executable, __file__, "--make", str(db), str(n), str(args.short_runs)],
                                      env=env, cwd=tmp, capture_output=True, text=True, check=True)
                dbs[kind] = (db, made.stdout.strip().splitlines()[-1] if n else "")
            variants[name] = (env, dbs)
        shot = str(Path(tmp) / "shot.svg")
        measures = [
            (f"tprompt runs ({args.short_runs} runs of 1k events)", "short", ["runs"]),
            (f"tprompt runs (same + one of {args.events // 1000}k)", "long", ["runs"]),
            ("tprompt events LONG (table)", "long", ["events", "RUN"]),
            ("tprompt events LONG --json", "long", ["events", "RUN", "--json"]),
            ("tprompt ui LONG --screenshot", "long", ["ui", "RUN", "--screenshot", shot]),
        ]
        results: dict[str, dict[str, float]] = {}
        for label, kind, command in measures:
            times: dict[str, list[float]] = {k: [] for k in variants}
            for _ in range(args.repeat):
                for name, (env, dbs) in variants.items():  # interleaved
                    db, run = dbs[kind]
                    argv = ["--db", str(db), *[run if a == "RUN" else a for a in command]]
                    times[name].append(timed(argv, env, tmp))
            med = {k: statistics.median(v) for k, v in times.items()}
            results[label] = med
            line = f"{label:48s} now {med['now']:7.2f} s"
            if "baseline" in med:
                line += f"   baseline {med['baseline']:7.2f} s   now/baseline {med['now'] / med['baseline']:.2f}"
            print(line, flush=True)
        for name in variants:
            short = results[measures[0][0]][name]
            long = results[measures[1][0]][name]
            table = results[measures[2][0]][name]
            as_json = results[measures[3][0]][name]
            print(f"{name}: runs long/short {long / short:.2f}; events table/json {table / as_json:.2f}")


if __name__ == "__main__":
    main()
