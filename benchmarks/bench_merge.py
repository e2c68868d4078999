"""``tprompt merge`` (issue 21): how long merging shards takes. Prints figures; not a test.

Run: python benchmarks/bench_merge.py [--runs 8] [--events 500] [--calls 200] [--repeat 5]

Two shards of ``--runs`` runs of ``--events`` events each (the event stream of
``bench_store``) and ``--calls`` recorded model calls per run (transcripts,
bodies, cache rows) are merged, medians of ``--repeat``:

* into a new file (built beside it, integrity-checked, renamed);
* the same shards again into that file (nothing new: the idempotent no-op);
* a shard whose runs are 40 % of the other's log, extended by the longer one (the prefix rule);
* one run extracted with ``run_ids`` into an empty shard.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import cpu_flags
from bench_store import created, stream

from tprompt.stores import EventLog, Store
from tprompt.stores.merge import merge_files, merge_into
from tprompt.stores.transcripts import NewCall


def shard(path: Path, tag: str, runs: int, events: int, calls: int, upto: float = 1.0) -> list[str]:
    ids = []
    with EventLog(path) as log:
        todo = stream(events - 1)
        for r in range(runs):
            run = log.create_run(created(), run_id=f"r-{tag}-{r:04d}")
            keep = todo[: max(1, int(len(todo) * upto))]
            for i in range(0, len(keep), 500):
                log.append(run, keep[i : i + 500], event_ids=[f"{run}:{i + k + 2}" for k in range(len(keep[i:i + 500]))])
            log.transcripts.record([
                NewCall(call_id=f"{tag}-{run}-{c}", run_id=run, seq=2, step="source", agent="scorer", model="fake",
                        kind="chat", cache_key=f"k-{tag}-{run}-{c}", request=f'{{"q":"{tag} {run} {c}"}}',
                        response=f'{{"a":"{c}"}}', prompt_tokens=10, completion_tokens=2, latency_s=0.01,
                        cache_hit=False, cost=None, error=None)
                for c in range(calls)
            ])
            ids.append(run)
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, {cpu_flags()}, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        a, b = tmp / "a.db", tmp / "b.db"
        shard(a, "a", args.runs, args.events, args.calls)
        shard(b, "b", args.runs, args.events, args.calls)
        short = tmp / "short.db"
        shard(short, "a", args.runs, args.events, args.calls, upto=0.4)
        figures: dict[str, list[float]] = {"new": [], "again": [], "extend": [], "run_ids": []}
        for i in range(args.repeat):
            into = tmp / f"all-{i}.db"
            t0 = time.perf_counter()
            counts = merge_files([a, b], into)
            figures["new"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            again = merge_files([a, b], into)
            figures["again"].append(time.perf_counter() - t0)
            assert not again.changed
            dst = tmp / f"short-{i}.db"
            with Store(short, readonly=True) as s:
                s.backup(dst)
            with Store(dst) as store:
                t0 = time.perf_counter()
                extended = merge_into(store, a)
                figures["extend"].append(time.perf_counter() - t0)
            with Store(tmp / f"cell-{i}.db") as store:
                t0 = time.perf_counter()
                cell = merge_into(store, into, run_ids=["r-a-0000"])
                figures["run_ids"].append(time.perf_counter() - t0)
        total_events = args.runs * args.events
        print(f"shards: 2, each {args.runs} runs x {args.events} events ({total_events} events), "
              f"{args.runs * args.calls} calls each; medians of {args.repeat}")
        print(f"  merge a+b into a new file: {statistics.median(figures['new']) * 1000:.0f} ms ({counts.describe()})")
        print(f"  again (nothing new):       {statistics.median(figures['again']) * 1000:.0f} ms")
        print(f"  extend 40% prefixes:       {statistics.median(figures['extend']) * 1000:.0f} ms ({extended.describe()})")
        print(f"  one run with run_ids:      {statistics.median(figures['run_ids']) * 1000:.0f} ms ({cell.describe()})")
        loop = statistics.median(python_loop(tmp / f"loop-{i}.db", [a, b]) for i in range(args.repeat))
        print(f"  baseline, rows copied in a Python loop (INSERT OR IGNORE, no checks, one transaction): "
              f"{loop * 1000:.0f} ms; ratio merge/loop {statistics.median(figures['new']) / loop:.2f}")


def python_loop(into: Path, sources: list[Path]) -> float:
    """The naive merge: read every row into Python and insert it (what the ATTACH path replaces)."""
    Store(into).close()
    t0 = time.perf_counter()
    dst = sqlite3.connect(into)
    for source in sources:
        src = sqlite3.connect(source)
        for table in ("runs", "events", "bodies", "llm_cache", "transcripts", "run_summaries", "experiments"):
            for row in src.execute(f"SELECT * FROM {table}"):
                dst.execute(f"INSERT OR IGNORE INTO {table} VALUES ({','.join('?' * len(row))})", row)
        src.close()
    dst.commit()
    dst.close()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
