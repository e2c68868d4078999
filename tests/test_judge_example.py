"""The LLM judge example of docs/tasks.md runs as shown: a judged run on the fake model, the judge's
transcripts, a rescore with another rubric that pays judge calls only."""

from __future__ import annotations

import json
import re
import shlex
import sqlite3
from pathlib import Path

from test_graph import tprompt

ROOT = Path(__file__).resolve().parent.parent


def doc_commands() -> list[list[str]]:
    """The ``sh`` block of the docs' "An LLM judge" section, one argv per line (``--db`` and the run id left as words)."""
    text = (ROOT / "docs" / "tasks.md").read_text()
    section = text.split("## An LLM judge", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block, "docs/tasks.md's judge section has no sh block"
    return [shlex.split(line.split(" > ")[0]) for line in block.group(1).strip().splitlines()]


def test_the_judge_example_runs_as_documented(tmp_path: Path) -> None:
    commands = doc_commands()
    assert [c[3] for c in commands] == ["run", "transcript", "rescore"]
    db = tmp_path / "judge.db"

    def run(argv: list[str], run_id: str = "") -> str:
        args = [a.replace("$(jq -r .run_id run.json)", run_id) for a in argv[3:]]
        args = [str(ROOT / a) if a.startswith("examples/") else a for a in args]
        return tprompt(db, *args).stdout

    data = json.loads(run(commands[0]))
    run_id = data["run_id"]
    assert data["status"] == "completed" and data["judge"]["judgements"] > 0
    listing = run(commands[1], run_id)
    assert "judge" in listing and "scorer" not in listing
    with sqlite3.connect(db) as conn:
        before = dict(conn.execute("SELECT agent, count(*) FROM transcripts GROUP BY agent").fetchall())
    run(commands[2], run_id)
    with sqlite3.connect(db) as conn:
        after = dict(conn.execute("SELECT agent, count(*) FROM transcripts GROUP BY agent").fetchall())
        rubrics = {json.loads(p)["rubric"] for (p,) in conn.execute(
            "SELECT payload FROM events WHERE type IN ('candidate.judged', 'test.judged')")}
    assert after["scorer"] == before["scorer"] and after["judge"] == 2 * before["judge"]
    assert rubrics == {"rubric.qa@v1", "rubric.terse@v1"}
