"""``tprompt experiment --ray``: cells as Ray tasks on a real local cluster (a head and two worker nodes on 127.0.0.1).

Marked ``ray``; they run in CI. Without Ray installed they fail with a message saying how to install it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_experiment import tprompt, write_toml

from tprompt.experiments.grid import load_experiment_file, plan_experiment
from tprompt.graph import comparable_events
from tprompt.stores import EventLog

pytestmark = pytest.mark.ray

# On loopback Ray would switch a node (and a driver) to the machine's external address without this;
# it is read when ray is imported, so it is set before any test imports it (the CLI children inherit it).
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

CONCURRENCY = 2
#: Calls a killed cell may pay again (docs/experiments.md): those in flight (the run's concurrency) plus
#: those answered after the last shipment that reached the driver (a copy still in the dead node's object
#: store is lost with it); at 0.05 s a call, a few tenths of a second of answers.
BOUND = 4 * CONCURRENCY
DEADLINE = 300  # seconds: bounds a hang on a loaded machine, never a wait for something to happen


def grid(calls: Path, name: str = "rayg") -> dict[str, Any]:
    """Four runs (two cells x two arms); every request the scorer or proposer sends is a line in ``calls``."""
    return {
        "name": name,
        "models": [{"proposer": f"fake:calls={calls}", "scorer": f"fake:delay=0.05,calls={calls}"}],
        "sources": ["ai2_science"],
        "targets": ["arc_challenge", "mmlu/anatomy"],
        "seeds": [0],
        "run": {"steps": 2, "candidates": 2, "examples": 4, "test_examples": 8, "mode": "logprob",
                "concurrency": CONCURRENCY},
    }


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def by_name(db: Path) -> dict[str, tuple[str, str, list]]:
    with EventLog(db, readonly=True) as log:
        return {r.name: (r.run_id, r.status, comparable_events(log, r.run_id)) for r in log.runs()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A head (no CPUs: cells go to the workers) and two worker nodes; only this cluster is shut down after."""
    try:
        import ray
        from ray.cluster_utils import Cluster
    except ImportError:
        pytest.fail("the ray tests need Ray: pip install -e '.[ray]' (or pip install 'tprompt[ray]')")
    shards = tmp_path_factory.mktemp("shards")
    os.environ["TPROMPT_SHARD_DIR"] = str(shards)  # the nodes' "local disks" (one machine here)
    t0 = time.monotonic()
    head = {
        "num_cpus": 0, "node_ip_address": "127.0.0.1", "include_dashboard": False,
        # Ports of our own: a second test session on this host does not collide with this one.
        "gcs_server_port": free_port(), "ray_client_server_port": free_port(), "dashboard_agent_listen_port": free_port()
    }
    c = Cluster(initialize_head=True, head_node_args=head)
    nodes = [c.add_node(num_cpus=1, node_ip_address="127.0.0.1") for _ in range(2)]
    c.wait_for_nodes()
    ray.init(address=c.address, _node_ip_address="127.0.0.1", logging_level="WARNING", log_to_driver=False)
    print(f"\nray cluster (head + {len(nodes)} workers) up in {time.monotonic() - t0:.1f} s")
    try:
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


@pytest.fixture(scope="module")
def sequential(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, tuple[str, str, list]], int, Path]:
    """The grid one cell after another, without Ray: its runs, the calls it paid, and the calls file."""
    tmp = tmp_path_factory.mktemp("sequential")
    calls = tmp / "calls"
    db = tmp / "seq.db"
    tprompt(db, "experiment", str(write_toml(tmp / "rayg.toml", grid(calls))), "--json")
    runs = by_name(db)
    assert len(runs) == 4 and {s for _, s, _ in runs.values()} == {"completed"}
    return runs, lines(calls), calls


def assert_same_events(db: Path, sequential: dict[str, tuple[str, str, list]]) -> None:
    runs = by_name(db)
    assert sorted(runs) == sorted(sequential)
    for name, (_run_id, status, events) in runs.items():
        assert status == "completed", name
        assert events == sequential[name][2], f"{name}: events differ from the sequential run"


def test_a_killed_worker_node_costs_at_most_the_calls_in_flight(cluster, sequential, tmp_path: Path) -> None:
    from tprompt.experiments.ray_cells import Callbacks, run_on_ray

    seq_runs, seq_calls, calls = sequential
    planned = plan_experiment(load_experiment_file(write_toml(tmp_path / "rayg.toml", grid(calls))))
    nodes = {n.node_id[:12]: n for n in cluster.worker_nodes}
    where: dict[int, str] = {}  # cell index -> node id prefix it runs on now
    died: list[tuple[int, str, str]] = []
    mid_cell = threading.Event()
    seqs: dict[int, int] = {}
    db = tmp_path / "ray.db"

    def started(cell_run, run_id, index, total, at):
        where[index] = at.split()[0]

    def events(index, cell_run, new, state, total):
        seqs[index] = new[-1].seq
        if state.step >= 1 and state.status == "running":
            mid_cell.set()  # a cell has shipped a whole step and is scoring the next one

    def retried(index, cell_run, at, error, attempt, total):
        died.append((index, cell_run.name, at))

    before = lines(calls)
    result: dict[str, Any] = {}

    def drive() -> None:
        try:
            with EventLog(db) as log:
                result["outcomes"] = run_on_ray(log, planned, ship_every=0.0, callbacks=Callbacks(
                    on_start=started, on_events=events, on_retry=retried))[1]
        except BaseException as exc:
            result["error"] = exc

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    assert mid_cell.wait(DEADLINE), "no cell got past its first step"
    victim_index = next(i for i in sorted(seqs) if where.get(i) in nodes)
    victim = nodes[where[victim_index]]
    on_victim = sorted(i for i, n in where.items() if n == where[victim_index])
    cluster.remove_node(victim, allow_graceful=False)
    driver.join(DEADLINE)
    assert not driver.is_alive(), "the grid did not finish after the node died"
    cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")  # two workers again for the next tests
    assert "error" not in result, result.get("error")
    assert all(not o.failed for o in result["outcomes"]), [o.error for o in result["outcomes"]]
    assert_same_events(db, seq_runs)
    paid = lines(calls) - before
    # Each shard starts with its own run's cache only, so the runs pay the calls they would share in one
    # database (the original prompt in both arms) each; what they needed is their answered transcripts.
    with sqlite3.connect(db) as conn:
        (needed,) = conn.execute("SELECT COUNT(*) FROM transcripts WHERE cache_hit = 0 AND error IS NULL").fetchone()
    again = paid - needed
    for index, name, at in died:
        print(f"cell {index} ({name}) died on node {at}")
    print(f"killed node {victim.node_id[:12]} running cell(s) {on_victim}; calls paid {paid}, "
          f"needed {needed} (sequential, one shared cache: {seq_calls}): paid again {again} (bound {BOUND} per killed cell)")
    assert {i for i, _, _ in died} == set(on_victim)  # every cell on the dead node, and only those, was resubmitted
    assert 0 <= again <= BOUND * len(died)


def test_the_cli_runs_the_grid_on_the_cluster_with_the_sequential_events(cluster, sequential, tmp_path: Path) -> None:
    seq_runs, _, calls = sequential
    db = tmp_path / "cli.db"
    config = write_toml(tmp_path / "rayg.toml", grid(calls))
    env = {**os.environ, "TPROMPT_DB": str(db)}
    proc = subprocess.run([sys.executable, "-m", "tprompt.cli", "experiment", str(config), "--ray-address",
                           cluster.address], env=env, capture_output=True, text=True, timeout=DEADLINE)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count(": started on node ") == 4
    assert "source prompt(s) seed the target stage" in proc.stderr  # per-event progress lines
    assert proc.stderr.count("stage started on ") == 6  # 2 target-only runs x 1 stage, 2 transfer runs x 2
    assert_same_events(db, seq_runs)
    again = subprocess.run([sys.executable, "-m", "tprompt.cli", "experiment", str(config), "--ray-address",
                            cluster.address, "--json"], env=env, capture_output=True, text=True, timeout=DEADLINE)
    data = json.loads(again.stdout)
    assert data["completed"] == data["total"] == 4 and "started" not in again.stderr  # all done: nothing submitted


def test_ray_and_workers_together_is_one_clear_line(tmp_path: Path) -> None:
    db = tmp_path / "none.db"
    proc = tprompt(db, "experiment", str(write_toml(tmp_path / "g.toml", grid(tmp_path / "c"))), "--ray",
                   "--workers", "2", check=False)
    assert proc.returncode == 2
    lines_ = proc.stderr.strip().splitlines()
    assert len(lines_) == 1 and lines_[0].startswith("error: --ray and --workers cannot be combined")
    assert not db.exists()


def test_without_ray_installed_the_error_says_how_to_install_it(tmp_path: Path) -> None:
    db = tmp_path / "none.db"
    config = write_toml(tmp_path / "g.toml", grid(tmp_path / "c"))
    code = ("import sys; sys.modules['ray'] = None\n"  # `import ray` raises ImportError, as without the package
            "from tprompt.cli import main\n"
            f"sys.argv = ['tprompt', '--db', {str(db)!r}, 'experiment', {str(config)!r}, '--ray']\n"
            "main()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines_ = proc.stderr.strip().splitlines()
    assert lines_ == ["error: --ray needs Ray, which is not installed (pip install 'tprompt[ray]')"]
    assert not db.exists()


def test_shards_made_on_two_nodes_merge_into_one_reportable_file(cluster, sequential, tmp_path: Path) -> None:
    """Each arm of one cell run on its own worker node, its final shard kept as a file; `tprompt merge` then `report`."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from tprompt.experiments.parallel import prepare_runs
    from tprompt.experiments.ray_cells import _Settings, cell_task
    from tprompt.stores.shard import extract

    seq_runs, _, calls = sequential
    config = grid(calls, name="rayg") | {"targets": ["arc_challenge"]}
    planned = plan_experiment(config)
    driver = tmp_path / "driver.db"
    with EventLog(driver) as log:
        _, runs = prepare_runs(log, planned)
    assert len(runs) == 2
    workers = [n.node_id for n in cluster.worker_nodes][:2]
    task = ray.remote(max_retries=0)(cell_task)
    shards = []
    for (_cell_run, run_id), node in zip(runs, workers):
        gen = task.options(num_cpus=0.25, scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(
            extract(driver, run_id), run_id, _Settings(1.0, None, None))
        items = [ray.get(ref) for ref in gen]
        assert items[0][0] == "start" and items[0][1].startswith(node[:12])
        assert items[-1] == ("end", None)
        path = tmp_path / f"shard-{node[:8]}.db"
        path.write_bytes([v for k, v in items if k == "shard"][-1])
        shards.append(path)
    merged = tmp_path / "all.db"
    out = tprompt(merged, "merge", str(driver), *map(str, shards), "--into", str(merged))
    print(out.stdout.strip())
    for (cell_run, _), shard in zip(runs, shards):
        with EventLog(shard, readonly=True) as log, EventLog(merged, readonly=True) as all_:
            (row,) = [r for r in log.runs() if r.name == cell_run.name]
            assert comparable_events(all_, row.run_id) == seq_runs[cell_run.name][2]
    report = tprompt(merged, "report", "rayg", "--out", str(tmp_path / "report"))
    assert (tmp_path / "report" / "report.md").exists()
    assert "Transfer-Prompting" in report.stdout


def test_ctrl_c_pauses_every_cell_on_the_cluster_and_a_rerun_continues_them(cluster, sequential, tmp_path: Path) -> None:
    seq_runs, _, calls = sequential
    db = tmp_path / "int.db"
    config = write_toml(tmp_path / "rayg.toml", grid(calls))
    env = {**os.environ, "TPROMPT_DB": str(db)}
    args = [sys.executable, "-m", "tprompt.cli", "experiment", str(config), "--ray-address", cluster.address]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline and proc.poll() is None and not scored(db):
            time.sleep(0.05)  # the poll step of a wait on the driver's events; DEADLINE bounds a hang
        assert proc.poll() is None, "the grid ended before a cell had a scored candidate"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=DEADLINE)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr  # paused, as `run` and `--workers` do
    assert f"continue with: tprompt --db {db} experiment" in stdout
    before = by_name(db)
    statuses = sorted(s for _, s, _ in before.values())
    assert len(before) == 4 and set(statuses) <= {"completed", "paused", "created"}, statuses
    assert "paused" in statuses, statuses  # a cell mid-step when the signal came paused, none left running
    again = subprocess.run([*args, "--json"], env=env, capture_output=True, text=True, timeout=DEADLINE)
    assert json.loads(again.stdout)["completed"] == 4, again.stderr
    after = by_name(db)
    assert {n: r for n, (r, _, _) in after.items()} == {n: r for n, (r, _, _) in before.items()}  # none created twice
    assert_same_events(db, seq_runs)


def scored(db: Path) -> bool:
    """Whether the driver's database has a scored candidate (False while the file or its schema is not there yet)."""
    if not db.exists():
        return False
    try:
        with sqlite3.connect(db, timeout=10) as conn:
            return conn.execute("SELECT 1 FROM events WHERE type = 'candidate.scored' LIMIT 1").fetchone() is not None
    except sqlite3.OperationalError:
        return False
