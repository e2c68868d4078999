"""Bytes a run adds to its database per optimization step (issue 10). Prints figures; not a test.

Run: python benchmarks/bench_step_storage.py [--steps 50] [--baseline DIR]

One target-only run of the fake model (``--steps`` steps, 4 candidates, 8
training examples each) is written to a fresh SQLite file. Printed: the file's
growth per step (after a WAL checkpoint and VACUUM, so free pages do not
count), and the bytes of event payloads and of transcript rows per step. With
``--baseline DIR`` (a directory whose ``tprompt`` is an older checkout, e.g. a
symlink ``DIR/tprompt -> /path/to/old/worktree``) the same run is written by
that code too and the ratios are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path


def measure(path: Path, steps: int) -> dict[str, float]:
    from tprompt.graph import Runner, create_run, make_config
    from tprompt.stores import EventLog

    def file_bytes() -> int:
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("VACUUM")
        conn.close()
        return path.stat().st_size

    def run(steps: int) -> tuple[int, int, int]:
        log = EventLog(path)
        cfg = dict(transfer=False, target_task="arc_challenge", proposer="fake", scorer="fake", steps=steps,
                   patience=None, candidates=4, examples=8, test_examples=2, mode="generate")
        run_id = create_run(log, make_config(cfg))
        Runner(log, run_id).run()
        log.close()
        conn = sqlite3.connect(path)
        payload, count = conn.execute(
            "SELECT COALESCE(SUM(LENGTH(payload)), 0), COUNT(*) FROM events WHERE run_id = ?", (run_id,)).fetchone()
        conn.close()
        return file_bytes(), payload, count

    EventLog(path).close()
    empty = file_bytes()
    one, p1, n1 = run(1)  # everything a run writes besides its steps, plus one step
    many, pn, nn = run(steps)
    per = steps - 1
    return {"file": ((many - one) - (one - empty)) / per, "payload": (pn - p1) / per, "events": (nn - n1) / per}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--baseline", help="a directory whose 'tprompt' is an older checkout")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # internal: one variant, in its own process
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure), args.steps)))
        return
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"fake model, target-only, {args.steps} steps x 4 candidates x 8 examples")
    figures: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in [("now", {}), *([("baseline", {"PYTHONPATH": args.baseline})] if args.baseline else [])]:
            db = Path(tmp) / f"{name}.db"
            env = {**os.environ, **extra}
            out = subprocess.run([sys.executable, __file__, "--steps", str(args.steps), "--measure", str(db)],
                                 env=env, cwd=tmp, capture_output=True, text=True, check=True)
            figures[name] = json.loads(out.stdout.strip().splitlines()[-1])
    for name, f in figures.items():
        print(f"{name:8s} database +{f['file']:,.0f} B/step; event payloads {f['payload']:,.0f} B/step "
              f"in {f['events']:.1f} events/step")
    if "baseline" in figures:
        now, old = figures["now"], figures["baseline"]
        print(f"now/baseline: database {now['file'] / old['file']:.2f}, event payloads {now['payload'] / old['payload']:.2f}")


if __name__ == "__main__":
    main()
