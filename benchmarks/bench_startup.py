"""Start-up time of commands that only read (issue 12, item 7). Prints figures; not a test.

Run: python benchmarks/bench_startup.py [--repeat 5] [--baseline DIR]

Times whole processes, wall and CPU time (`python -m tprompt.cli ...`), on a database holding one
fake-model run: `--version`, `runs` and `show RUN`. With ``--baseline DIR`` (a
directory holding an older tprompt checkout as the package ``tprompt``, e.g. a
symlink ``DIR/tprompt -> /path/to/old/worktree``), the same commands run with
that code too, interleaved, and the ratios are printed. Medians of ``--repeat``.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import cpu_flags, medians, timed_cli_cpu

COMMANDS = (["--version"], ["runs"], ["show", "RUN"])


def make_db(path: Path) -> str:
    from tprompt.graph import Runner, create_run, make_config
    from tprompt.stores import EventLog

    log = EventLog(path)
    cfg = dict(source_tasks=["ai2_science"], target_task="arc_challenge", proposer="fake", scorer="fake", steps=1,
               candidates=2, examples=2, test_examples=2, mode="generate")
    run_id = create_run(log, make_config(cfg))
    Runner(log, run_id).run()
    log.close()
    return run_id


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--baseline", help="a directory whose 'tprompt' is an older checkout")
    parser.add_argument("--make-db", help=argparse.SUPPRESS)  # internal: each variant makes its own database
    args = parser.parse_args()
    if args.make_db:
        print(make_db(Path(args.make_db)))
        return
    print(f"machine: {cpu_flags()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        variants: dict[str, tuple[dict[str, str], str]] = {}
        # Each variant gets a database written by its own code (schemas differ between versions).
        for name, extra in [("now", {}), *([("baseline", {"PYTHONPATH": args.baseline})] if args.baseline else [])]:
            db = Path(tmp) / f"{name}.db"
            env = {**os.environ, **extra, "TPROMPT_DB": str(db)}
            made = subprocess.run([sys.executable, __file__, "--make-db", str(db)], env=env, cwd=tmp,
                                  capture_output=True, text=True, check=True)
            variants[name] = (env, made.stdout.strip().splitlines()[-1])
        for command in COMMANDS:
            times: dict[str, list[float]] = {k: [] for k in variants}
            cpu: dict[str, list[float]] = {k: [] for k in variants}
            for _ in range(args.repeat):
                for name, (env, run_id) in variants.items():  # interleaved
                    argv = [run_id if a == "RUN" else a for a in command]
                    wall, used = timed_cli_cpu(argv, env, tmp)
                    times[name].append(wall)
                    cpu[name].append(used)
            print(medians(f"tprompt {' '.join(command):12s} wall", times, 2), flush=True)
            print(medians(f"tprompt {' '.join(command):12s} CPU ", cpu, 2), flush=True)


if __name__ == "__main__":
    main()
