"""Every ``next:`` and ``continue with:`` hint tprompt prints runs exactly as printed (issue 29).

The runs use a database that is not the default one, and each hint is run from
another folder with no ``TPROMPT_DB``: a hint that forgot ``--db`` finds no database.
Placeholders a hint names for the user to choose (``TASK``, ``N``) are filled in.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

SMALL = ["--model", "fake", "--steps", "1", "--candidates", "2", "--top-k", "2", "--examples", "3",
         "--test-examples", "3", "--mode", "generate"]
PLACEHOLDERS = {"TASK": "arc_challenge", "N": "1000"}


def cli(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TPROMPT_DB"}
    done = subprocess.run([sys.executable, "-m", "tprompt.cli", *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, f"tprompt {shlex.join(argv)} exited {done.returncode}:\n{done.stderr}"
    return done


def hints(stderr: str) -> list[str]:
    """The commands of the ``next:`` and ``continue with[...]:`` lines, without their (explanations)."""
    found = []
    for line in stderr.splitlines():
        match = re.search(r"(?:^next|continue with(?: a higher budget)?): (tprompt .*)$", line)
        if match is None:
            continue
        for part in match.group(1).split(" · "):
            found.append(re.sub(r" \([^)]*\)$", "", part.strip()))
    return found


def run_hints(stderr: str, cwd: Path, seen: list[str]) -> list[subprocess.CompletedProcess[str]]:
    """Run each hint of ``stderr`` as printed (placeholders filled in); ``ui`` is interactive: only its help."""
    done = []
    for hint in hints(stderr):
        argv = [PLACEHOLDERS.get(word, word) for word in shlex.split(hint)][1:]
        seen.append(hint)
        if "ui" in argv:
            argv.append("--help")
        done.append(cli(argv, cwd))
    return done


def test_every_printed_next_and_continue_hint_runs_as_printed(tmp_path: Path) -> None:
    start, elsewhere = tmp_path / "start", tmp_path / "elsewhere"
    start.mkdir()
    elsewhere.mkdir()
    db = tmp_path / "my runs.db"  # not the default, and a name the shell must quote
    seen: list[str] = []

    reviewed = cli(["--db", str(db), "run", "--source", "ai2_science", "--target", "medqa_usmle", "--review", *SMALL],
                   start)
    (review_hint,) = hints(reviewed.stderr)
    assert review_hint.startswith(f"tprompt --db {shlex.quote(str(db))} review r-")
    run_id = review_hint.split()[-1]
    run_hints(reviewed.stderr, elsewhere, seen)  # shows the candidates
    accepted = cli(["--db", str(db), "review", run_id, "--accept"], elsewhere)
    for step in run_hints(accepted.stderr, elsewhere, seen):  # resume: the run goes on, and pauses for the next review
        for _ in range(3):
            if "review" not in " ".join(hints(step.stderr)):
                break
            cli(["--db", str(db), "review", run_id, "--accept"], elsewhere)
            step = cli(["--db", str(db), "resume", run_id], elsewhere)
        assert re.search(rf"run {run_id} completed", step.stdout), step.stdout + step.stderr
        forked = run_hints(step.stderr, elsewhere, seen)  # show, ui, fork RUN --target TASK
        assert any(f"forked {run_id} at seq" in f.stderr for f in forked)  # after its source stage (the transfer)

    config = tmp_path / "paid.toml"
    config.write_text('prices = { fake = [1000.0, 2000.0] }\n')
    paused = cli(["--db", str(db), "run", "--config", str(config), "--max-cost", "0.05", *SMALL], start)
    assert "continue with a higher budget" in paused.stderr and "continue with:" in paused.stderr, paused.stderr
    run_hints(paused.stderr, elsewhere, seen)
    assert any(h.endswith("--max-cost N") for h in seen) and any(" fork " in h for h in seen), seen
    assert all(h.startswith(f"tprompt --db {shlex.quote(str(db))} ") for h in seen), seen


def test_every_command_the_docs_name_exists() -> None:
    # was: docs/experiments.md named `tprompt history`, which no version of tprompt had
    import typer.main

    from tprompt.cli import app

    root = Path(__file__).resolve().parent.parent
    commands = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    named: dict[str, set[str]] = {}
    for doc in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        for word in re.findall(r"`tprompt (?:--db \S+ )?([a-z][a-z-]*)\b", doc.read_text(encoding="utf-8")):
            named.setdefault(word, set()).add(doc.name)
    missing = {w: sorted(docs) for w, docs in named.items() if w not in commands}
    assert not missing, missing
    assert {"run", "fork", "runs", "eval"} <= set(named)
