"""The vLLM grid shipped in examples/ plans, and its commands match docs/experiments.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "experiment-vllm.toml"


def test_vllm_grid_dry_run_points_every_run_at_the_server(tmp_path: Path) -> None:
    db = tmp_path / "vllm.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    done = subprocess.run(
        [sys.executable, "-m", "tprompt.cli", "--db", str(db), "experiment", str(EXAMPLE), "--dry-run", "--json"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    runs = json.loads(done.stdout)["runs"]
    assert len(runs) == 3 * 3 * 2 and not db.exists()

    from tprompt.experiments.grid import load_experiment_file, plan_experiment

    planned = plan_experiment(load_experiment_file(EXAMPLE), where=EXAMPLE.name)
    assert {r.config.base_url for r in planned.runs} == {"http://127.0.0.1:8000/v1"}
    assert {r.config.scorer for r in planned.runs} == {"openai:Qwen/Qwen2.5-7B-Instruct"}


def test_docs_give_the_examples_commands() -> None:
    header = [line.lstrip("# ").strip() for line in EXAMPLE.read_text().splitlines() if line.startswith("#   ")]
    docs = (ROOT / "docs" / "experiments.md").read_text()
    serve = next(line for line in header if line.startswith("pip install vllm")).split("&& ", 1)[1]
    assert serve in docs
    for command in (line for line in header if line.startswith("tprompt") and "--dry-run" not in line):
        assert command in docs
