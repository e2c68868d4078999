"""How fast a run pauses while a user metric hangs (issue 32). Prints figures; not a test.

Run: python benchmarks/pause_hanging_metric.py [SIGTERM|SIGINT ...]

For each signal: a ``tprompt run --json`` on the fake model whose metric
(``MODULE:FUNCTION``) never returns; once the metric is inside a call (it
writes a mark file), the signal is sent; printed are the seconds until the
``run.paused`` event is in the database and until the process has exited.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

METRIC = """
import os, time
from tprompt import metric

@metric(name="hang")
def hang(example, answer):
    open(os.environ["HANG_MARK"], "w").close()
    while True:
        time.sleep(1)
"""


def once(sig: signal.Signals, folder: Path) -> None:
    mark, db = folder / "mark", folder / f"{sig.name}.db"
    mark.unlink(missing_ok=True)
    env = {**os.environ, "TPROMPT_DB": str(db), "HANG_MARK": str(mark), "TPROMPT_HOME": str(folder / "home")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tprompt.cli", "run", "--json", "--model", "fake", "--source", "pubmedqa_long",
         "--target", "pubmedqa_long", "--steps", "1", "--candidates", "2", "--top-k", "1", "--examples", "4",
         "--test-examples", "4", "--metric", "hanging_metric:hang", "--metric-timeout", "600"],
        env=env, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not mark.exists():
        if proc.poll() is not None:
            raise SystemExit(proc.communicate()[1])
        time.sleep(0.05)
    t0 = time.monotonic()
    proc.send_signal(sig)
    paused = None
    while paused is None:
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                if conn.execute("SELECT 1 FROM events WHERE type = 'run.paused'").fetchone():
                    paused = time.monotonic() - t0
        except sqlite3.Error:
            pass
        time.sleep(0.02)
    out, _ = proc.communicate(timeout=600)
    print(f"{sig.name}: run.paused after {paused:.2f} s, process exited after {time.monotonic() - t0:.2f} s "
          f"(exit {proc.returncode}, status {json.loads(out)['status']})")


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="pause-metric-"))
    (folder / "hanging_metric.py").write_text(METRIC)
    for name in sys.argv[1:] or ["SIGTERM", "SIGINT"]:
        once(signal.Signals[name], folder)
    print(f"load average: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
