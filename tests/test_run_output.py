"""What `tprompt run` tells a user whose stderr is not a terminal (issue 12, item 12)."""

from __future__ import annotations

from pathlib import Path

from test_graph import cli_args, tprompt


def test_plain_progress_lines_and_next_steps(tmp_path: Path) -> None:
    proc = tprompt(tmp_path / "t.db", "run", *cli_args())
    lines = proc.stderr.splitlines()
    assert any(line.startswith("source step 1/2 done: best training objective") for line in lines), proc.stderr
    assert any(line.startswith("tested best target prompt on arc_challenge") for line in lines)
    run_id = next(line.split()[1] for line in lines if line.startswith("run r-") and "completed at seq" in line)
    db = tmp_path / "t.db"  # not the default database: every command printed names it
    assert f"next: tprompt --db {db} show {run_id}" in proc.stderr and f"tprompt --db {db} ui {run_id}" in proc.stderr
    json_run = tprompt(tmp_path / "t.db", "run", "--json", *cli_args())
    assert json_run.stderr.strip() == ""  # --json: data on stdout, nothing else
