"""Experiment grid wall time: sequential, --workers 2, --workers 4, and on a local Ray cluster. Prints figures; not a test.

Run: python benchmarks/bench_grid.py [--repeat 3] [--delay 0.05]

An I/O-bound grid: 8 runs (4 targets x 2 arms) whose scorer is the fake model
waiting ``--delay`` seconds per request, so the cells spend their time waiting
as they would on a served model. Every variant is the CLI (``tprompt
experiment``) in a fresh database; the Ray variant joins a cluster of a head
(no CPUs) and two worker nodes on 127.0.0.1 started once before the timings
(its start-up is printed apart). Each variant's events are compared with the
sequential run's (ids and timestamps aside).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import cpu_flags

from tprompt.graph import comparable_events
from tprompt.stores import EventLog


def grid(delay: float) -> dict[str, Any]:
    return {
        "name": "bench",
        "models": [{"proposer": "fake", "scorer": f"fake:delay={delay}"}],
        "sources": ["ai2_science"],
        "targets": ["arc_challenge", "mmlu/anatomy", "medmcqa", "logiqa2"],
        "seeds": [0],
        "run": {"steps": 2, "candidates": 2, "examples": 4, "test_examples": 8, "mode": "logprob", "concurrency": 2},
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(config: Path, db: Path, *args: str) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "tprompt.cli", "--db", str(db), "experiment", str(config), "--json",
                           *args], capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"tprompt experiment {' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    data = json.loads(proc.stdout)
    assert data["completed"] == data["total"], data
    return wall


def events(db: Path) -> dict[str, list]:
    with EventLog(db, readonly=True) as log:
        return {r.name: comparable_events(log, r.run_id) for r in log.runs()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--delay", type=float, default=0.05)
    args = parser.parse_args()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores ({cpu_flags()}), Python {platform.python_version()}, "
          f"load average {load:.1f}")
    import ray
    from ray.cluster_utils import Cluster

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    t0 = time.perf_counter()
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "node_ip_address": "127.0.0.1", "include_dashboard": False, "gcs_server_port": free_port(),
        "ray_client_server_port": free_port(), "dashboard_agent_listen_port": free_port()})
    for _ in range(2):
        cluster.add_node(num_cpus=2, node_ip_address="127.0.0.1")
    cluster.wait_for_nodes()
    print(f"ray {ray.__version__}: a head and 2 worker nodes (2 CPUs each) up in {time.perf_counter() - t0:.1f} s")
    variants: list[tuple[str, tuple[str, ...]]] = [
        ("sequential", ()), ("--workers 2", ("--workers", "2")), ("--workers 4", ("--workers", "4")),
        ("ray, 2 worker nodes", ("--ray-address", cluster.address)),
    ]
    walls: dict[str, list[float]] = {name: [] for name, _ in variants}
    same: dict[str, bool] = {name: True for name, _ in variants}
    try:
        with tempfile.TemporaryDirectory(prefix="tprompt-bench-grid-") as tmp:
            config = Path(tmp) / "bench.json"
            config.write_text(json.dumps(grid(args.delay)))
            reference: dict[str, list] | None = None
            for r in range(args.repeat):
                for name, extra in variants:  # interleaved, so a change in the machine's load hits every variant
                    db = Path(tmp) / f"{r}-{name.replace(' ', '_')}.db"
                    walls[name].append(run(config, db, *extra))
                    got = events(db)
                    reference = reference or got
                    same[name] = same[name] and got == reference and len(got) == 8
                    print(f"  repeat {r + 1}, {name}: {walls[name][-1]:.2f} s", flush=True)
    finally:
        cluster.shutdown()
    base = statistics.median(walls["sequential"])
    print(f"8 runs, fake scorer {args.delay} s per request, concurrency 2, median of {args.repeat}:")
    for name, _ in variants:
        med = statistics.median(walls[name])
        print(f"  {name:22s} {med:7.2f} s   ratio to sequential {med / base:.2f}   "
              f"events equal to sequential's: {'yes' if same[name] else 'NO'}")


if __name__ == "__main__":
    main()
