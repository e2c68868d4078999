"""Event-log benchmark: append throughput, projection time, fork cost. Prints figures; not a test.

Run: python benchmarks/bench_store.py [--repeat 5] [--big 100000]

Targets (issue 2): >= 20,000 events/s batched, projecting 100,000 events < 1 s,
fork cost flat in the parent's length.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tprompt.config import RunConfig
from tprompt.stores import (
    CandidateScored,
    Event,
    EventLog,
    PromptCandidate,
    RunCreated,
    StageStarted,
    StepCompleted,
    StepProposed,
    prompt_id_of,
)

ORIGINAL = "Answer the question. Think step by step."


def created() -> RunCreated:
    return RunCreated(
        config=RunConfig.model_validate({"proposer": "fake", "scorer": "fake", "steps": 10}),
        source_tasks=["gsm8k"],
        target_task="medqa",
        original_prompt=PromptCandidate(prompt_id=prompt_id_of(ORIGINAL), text=ORIGINAL, origin="original"),
    )


def step_events(step: int, width: int = 8) -> list[Event]:
    """One optimization step as the graph writes it: proposal, one score per candidate, completion."""
    texts = [f"{ORIGINAL} Variant {step}.{k}: be concise and check the units." for k in range(width)]
    cands = [PromptCandidate(prompt_id=prompt_id_of(t), text=t) for t in texts]
    events: list[Event] = [StepProposed(stage="source", step=step, candidates=cands, call_ids=[f"c{step}"])]
    for k, c in enumerate(cands):
        acc = ((step * 7 + k * 13) % 100) / 100
        events.append(
            CandidateScored(
                stage="source", step=step, prompt_id=c.prompt_id, text=c.text, task="gsm8k", n_examples=32,
                metrics={"accuracy": acc, "ifr": 0.9, "ece": 0.1, "auroc": 0.6, "pr_p": 0.5, "pr_n": 0.7},
                objective=acc, scorer_calls=32,
            )
        )
    events.append(StepCompleted(stage="source", step=step, best_prompt_id=cands[0].prompt_id, best_objective=0.5))
    return events


def stream(n: int) -> list[Event]:
    """``n`` events after run.created: a stage start, then whole steps (cut to ``n``)."""
    out: list[Event] = [StageStarted(stage="source", tasks=["gsm8k"])]
    step = 1
    while len(out) < n:
        out += step_events(step)
        step += 1
    return out[:n]


def fill(log: EventLog, n: int, batch: int = 500) -> str:
    run = log.create_run(created())
    events = stream(n - 1)
    for i in range(0, len(events), batch):
        log.append(run, events[i : i + batch])
    return run


def median_of(repeat: int, fn: Callable[[], float]) -> tuple[float, list[float]]:
    values = [fn() for _ in range(repeat)]
    return statistics.median(values), values


def bench_append(tmp: Path, n: int, batch: int, tag: str) -> float:
    with EventLog(tmp / f"append-{tag}-{time.perf_counter_ns()}.db") as log:
        run = log.create_run(created())
        events = stream(n)
        t0 = time.perf_counter()
        seq = 2
        for i in range(0, n, batch):
            chunk = events[i : i + batch]
            log.append(run, chunk, expected_seq=seq)
            seq += len(chunk)
        elapsed = time.perf_counter() - t0
        assert log.last_seq(run) == n + 1
    return n / elapsed


def bench_raw(tmp: Path, n: int, batch: int, tag: str) -> float:
    """The same rows in the same schema with plain sqlite3: BEGIN IMMEDIATE, one INSERT, COMMIT per batch.

    The rows (payload JSON included) are made before the clock starts: this is
    what SQLite itself costs, the floor for :meth:`EventLog.append`.
    """
    import sqlite3
    import uuid

    path = tmp / f"raw-{tag}-{time.perf_counter_ns()}.db"
    with EventLog(path) as log:  # the schema and pragmas of a tprompt database
        run = log.create_run(created())
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    rows = [(run, 2 + i, uuid.uuid4().hex, ev.type, ev.schema_version, ev.model_dump_json(), "2026-01-01T00:00:00")
            for i, ev in enumerate(stream(n))]
    t0 = time.perf_counter()
    for i in range(0, n, batch):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO events (run_id, seq, event_id, type, schema_version, payload, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows[i : i + batch],
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="repetitions per figure (the median is printed)")
    parser.add_argument("--big", type=int, default=100_000, help="events in the big run")
    args = parser.parse_args()
    r = args.repeat
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"medians of {r} repetitions; file databases in a temp dir (WAL, synchronous=NORMAL)")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)

        for batch, n in ((1, 2_000), (10, 20_000), (50, 20_000)):
            ours, raw = [], []
            for _ in range(r):  # interleaved, so both see the same machine
                ours.append(bench_append(tmp, n, batch, f"b{batch}"))
                raw.append(bench_raw(tmp, n, batch, f"b{batch}"))
            rate, floor = statistics.median(ours), statistics.median(raw)
            print(
                f"append, {batch:2d} event(s) per transaction: {rate:10,.0f} events/s; raw sqlite3 {floor:10,.0f} events/s;"
                f" raw/EventLog time ratio {floor / rate:.2f}   (runs: {', '.join(f'{v:,.0f}' for v in ours)})"
            )

        with EventLog(tmp / "big.db") as log:
            t0 = time.perf_counter()
            big = fill(log, args.big)
            print(f"(filled a run of {args.big:,} events in {time.perf_counter() - t0:.1f} s)")
            small = fill(log, 1_000)

            cpu: list[float] = []

            def project() -> float:
                t0, c0 = time.perf_counter(), time.process_time()
                state = log.state(big)
                elapsed = time.perf_counter() - t0
                cpu.append(time.process_time() - c0)
                assert state.last_seq == args.big
                return elapsed

            log.state(big)  # warm the page cache: we measure the fold, not the disk
            secs, values = median_of(r, project)
            print(
                f"project {args.big:,} events (log.state): {secs:.3f} s wall, {statistics.median(cpu):.3f} s CPU"
                f"   (wall runs: {', '.join(f'{v:.3f}' for v in values)})"
            )

            for parent, n in ((small, 1_000), (big, args.big)):

                def fork_ms(parent: str = parent, n: int = n) -> float:
                    t0 = time.perf_counter()
                    for _ in range(20):
                        log.fork(parent, n, config=RunConfig.model_validate({"proposer": "fake", "scorer": "fake"}), target_task="medqa")
                    return (time.perf_counter() - t0) / 20 * 1000

                ms, values = median_of(r, fork_ms)
                print(f"fork a parent of {n:>7,} events: {ms:.3f} ms   (runs: {', '.join(f'{v:.3f}' for v in values)})")


if __name__ == "__main__":
    main()
