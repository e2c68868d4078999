"""Prompt registries (issue 33): the best prompt registered in a real local MLflow server and loaded back
with MLflow's own client; Langfuse's prompt JSON written and read back by `run --prompt-file`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow_server import MlflowServer
from test_graph import run_in_process

from tprompt.export.registry import double_braces
from tprompt.prompt_file import from_double_braces, read_prompt_source


def cli(db: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tprompt.cli", "--db", str(db), *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def test_braces_both_ways() -> None:
    assert double_braces("Q: {question} {{literal}}") == "Q: {{question}} {literal}"
    assert from_double_braces("Q: {{question}} {literal}") == "Q: {question} {{literal}}"


@pytest.mark.mlflow
def test_export_to_mlflow_registers_a_version_loaded_back_by_mlflow(tmp_path: Path, mlflow_server: MlflowServer) -> None:
    import mlflow

    db = tmp_path / "t.db"
    log, run_id = run_in_process(db, steps=1)
    log.close()
    env = {"MLFLOW_TRACKING_URI": mlflow_server.url}
    first = cli(db, "export", run_id, "--to", "mlflow:tp-test", "--alias", "production", env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "prompts:/tp-test/1"
    again = cli(db, "export", run_id, "--to", "mlflow:tp-test", env=env)
    assert again.stdout.strip() == "prompts:/tp-test/2"  # a new version each time
    mlflow.set_tracking_uri(mlflow_server.url)
    prompt = mlflow.genai.load_prompt("prompts:/tp-test@production")
    assert prompt.version == 1
    messages = prompt.template
    assert isinstance(messages, list) and messages[-1]["role"] == "user" and "{{question}}" in messages[-1]["content"]
    assert prompt.tags["tprompt.run_id"] == run_id and prompt.tags["tprompt.stage"] == "target"
    assert json.loads(prompt.tags["tprompt.objective"]) > 0
    assert "question" in prompt.variables
    filled = prompt.format(**{**dict.fromkeys(prompt.variables, "-"), "question": "Is the sky blue?"})
    assert "Is the sky blue?" in filled[-1]["content"]


def test_bad_registry_input_is_one_line(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    log, run_id = run_in_process(db, steps=1)
    log.close()
    bad = cli(db, "export", run_id, "--to", "wandb")
    assert bad.returncode == 2 and "unknown registry in --to 'wandb'" in bad.stderr and "Traceback" not in bad.stderr
    unreachable = cli(db, "export", run_id, "--to", "mlflow:x", env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:1",
                                                                   "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"})
    assert unreachable.returncode == 2 and "MLflow (http://127.0.0.1:1) refused prompt 'x'" in unreachable.stderr
    assert len(unreachable.stderr.strip().splitlines()) == 1


def test_langfuse_json_round_trips_through_prompt_file(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    log, run_id = run_in_process(db, steps=1)
    state = log.state(run_id)
    log.close()
    out = tmp_path / "lf.json"
    proc = cli(db, "export", run_id, "--format", "langfuse", "--alias", "production", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["type"] == "chat" and data["labels"] == ["production"]
    assert data["config"]["tprompt"]["run_id"] == run_id
    assert any("{{question}}" in m["content"] for m in data["prompt"])
    template = read_prompt_source(out)
    assert not isinstance(template, str)
    assert "question" in template.fields
    best = state.best("target")
    assert best is not None and best.text in template.original_text
