"""kill -9 at random points of a run, then resume: are the events those of an uninterrupted run? Prints a table.

Run: python benchmarks/kill_resume.py [--model fake|smollm2] [--judge SPEC] [--points 6] [--seed 0]
     [--metric NAME_OR_PATH ...] [--source TASK --target TASK] [--cwd DIR] [--steps N]
     [--proposer-style paper|reflective] [--parent-selection best|pareto] [--program MODULE:FUNCTION]

``--metric`` adds a metric plug-in to every run (``--metric my_metrics:brevity
--cwd examples`` for the example user metric, importable from that folder).

A reference run goes uninterrupted; then, for each of ``--points`` event
counts drawn at random (seeded) from the reference's length, a fresh
``tprompt run`` is killed with SIGKILL once its log holds that many events and
``tprompt resume`` finishes it. Compared: every event's type and payload, ids,
timestamps and pause/resume marks aside (``graph.comparable_events``). Also
printed: model calls paid twice (a cache key answered by a model more than once).
``--judge SPEC`` runs an LLM judge too (a ``candidate.judged``/``test.judged`` per answer set),
so kills also land inside the judge node. ``--proposer-style reflective
--parent-selection pareto`` runs the reflective proposer with parents drawn
from the Pareto pool (``--steps 2`` gives each stage a proposal whose parent
is drawn from a pool of several). ``--program pubmed:run --cwd examples/program
--target pubmedqa.jsonl`` runs the bundled two-prompt program (docs/programs.md),
target only, so kills also land inside the program's rows.
"""

from __future__ import annotations

import argparse
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIG = ["--source", "ai2_science", "--target", "arc_challenge", "--steps", "1", "--candidates", "2", "--top-k", "1",
          "--examples", "4", "--test-examples", "4"]


CWD: str | None = None  # where the runs are started (--cwd): a user metric module imports from there


def tprompt(db: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "tprompt.cli", "--db", str(db), *args], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=3600, cwd=CWD)


def count_events(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM events").fetchone()[0]
    except sqlite3.Error:
        return 0


def paid_twice(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM (SELECT cache_key FROM transcripts WHERE cache_hit = 0 AND error IS NULL"
                            " GROUP BY cache_key HAVING count(*) > 1)").fetchone()[0]


def main() -> None:
    from tprompt.graph import comparable_events
    from tprompt.stores import EventLog

    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="fake")
    parser.add_argument("--points", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--judge", default=None, metavar="SPEC", help="an LLM judge's model spec (default: none)")
    parser.add_argument("--metric", action="append", default=[], help="a metric plug-in for the runs (repeat)")
    parser.add_argument("--source", help="source task (default: ai2_science)")
    parser.add_argument("--target", help="target task (default: arc_challenge)")
    parser.add_argument("--cwd", help="folder the runs start in (a user metric module imports from there)")
    parser.add_argument("--steps", type=int, default=1, help="optimization steps per stage (default: 1)")
    parser.add_argument("--proposer-style", default="paper", choices=("paper", "reflective"))
    parser.add_argument("--parent-selection", default="best", choices=("best", "pareto"))
    parser.add_argument("--program", help="a program MODULE:FUNCTION whose prompts the runs optimize (target only)")
    args = parser.parse_args()
    global CWD
    CWD = str(Path(args.cwd).resolve()) if args.cwd else None
    config = list(CONFIG)
    for flag, value in (("--source", args.source), ("--target", args.target), ("--steps", str(args.steps))):
        if value:
            config[config.index(flag) + 1] = value
    if args.program:  # a program's run: target only
        config = [*config[2:], "--program", args.program]
    run_args = ["run", "--json", "--model", args.model, *config, *(a for m in args.metric for a in ("--metric", m)),
                *(["--judge", args.judge] if args.judge else []), "--proposer-style", args.proposer_style,
                *(["--parent-selection", args.parent_selection] if args.parent_selection != "best" else [])]
    with tempfile.TemporaryDirectory() as tmp:
        ref_db = Path(tmp) / "ref.db"
        tprompt(ref_db, *run_args)
        with EventLog(ref_db) as log:
            (ref,) = log.runs()
            reference = comparable_events(log, ref.run_id)
        n = len(reference)
        points = sorted(random.Random(args.seed).sample(range(2, n), min(args.points, n - 2)))
        judged = sum(t in ("candidate.judged", "test.judged") for t, _ in reference)
        print(f"model {args.model}, judge {args.judge or '-'} ({judged} candidate.judged/test.judged), proposer style "
              f"{args.proposer_style}, parents {args.parent_selection}, {args.steps} step(s) per stage: "
              f"uninterrupted run of {n} events; kill -9 after {points} events")
        same_all = True
        for point in points:
            db = Path(tmp) / f"kill{point}.db"
            proc = subprocess.Popen([sys.executable, "-m", "tprompt.cli", "--db", str(db), *run_args],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=CWD)
            deadline = time.monotonic() + 1800
            while count_events(db) < point and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            at = count_events(db)
            with EventLog(db) as log:
                (run,) = log.runs()
                run_id = run.run_id
            tprompt(db, "resume", run_id)
            with EventLog(db) as log:
                same = comparable_events(log, run_id) == reference
                status = log.state(run_id).status
            same_all &= same
            print(f"  killed at {at:3d} events -> resumed {status}; events identical: {same}; "
                  f"calls paid twice: {paid_twice(db)}")
        print("all identical" if same_all else "SOME DIFFER")
        sys.exit(0 if same_all else 1)


if __name__ == "__main__":
    main()
