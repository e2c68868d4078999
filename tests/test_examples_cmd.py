"""``tprompt examples``: the example files the docs name, listed, printed and copied (issue 29: a wheel install
lacked examples/my_metrics.py and examples/judge.toml, which the docs point to). tests/test_wheel.py checks the
wheel holds them and that the installed command copies them."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from conftest import cli_in_process as cli

ROOT = Path(__file__).resolve().parents[1]


def tracked_examples() -> list[str]:
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard", "examples"],
                            capture_output=True, text=True, check=True).stdout.split()
    return sorted(name.removeprefix("examples/") for name in listed if (ROOT / name).is_file())


def test_every_example_file_the_docs_name_is_listed(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "examples", "--json")
    assert code == 0
    listed = [e["name"] for e in json.loads(out)]
    assert listed == tracked_examples()
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    named = {m for d in docs for m in re.findall(r"examples/([\w./-]+\.\w+)", d.read_text())}
    assert named and named <= set(listed), named - set(listed)


def test_one_example_is_printed_as_it_is(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "examples", "dates/template.json")
    assert code == 0
    assert out == (ROOT / "examples" / "dates" / "template.json").read_text()
    code, out, _ = cli(capsys, "examples", "examples/judge.toml")  # as the docs name it
    assert code == 0 and out == (ROOT / "examples" / "judge.toml").read_text()


def test_copy_writes_dir_examples_where_the_docs_commands_run(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = cli(capsys, "examples", "--copy", str(tmp_path))
    assert code == 0, err
    for name in tracked_examples():
        assert (tmp_path / "examples" / name).read_bytes() == (ROOT / "examples" / name).read_bytes()
    code, _, err = cli(capsys, "examples", "dates", "--copy", str(tmp_path / "only"))
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "only" / "examples" / "dates").iterdir()) == [
        "datemetrics.py", "dates.jsonl", "template.json"]
    assert not (tmp_path / "only" / "examples" / "judge.toml").exists()


def test_an_unknown_example_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "examples", "my_metric.py")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "no example named 'my_metric.py'" in err and "my_metrics.py" in err


def test_copy_over_an_existing_file_writes_nothing(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "examples" / "dates").mkdir(parents=True)
    (tmp_path / "examples" / "dates" / "template.json").write_text("mine\n")
    code, _, err = cli(capsys, "examples", "--copy", str(tmp_path))
    assert code == 2
    assert err.count("\n") == 1 and "template.json exists already; nothing was copied" in err
    assert sorted(p.name for p in (tmp_path / "examples").rglob("*")) == ["dates", "template.json"]
    assert (tmp_path / "examples" / "dates" / "template.json").read_text() == "mine\n"


def test_copy_into_a_file_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    code, _, err = cli(capsys, "examples", "--copy", str(tmp_path / "f"))
    assert code == 2
    assert err.count("\n") == 1 and "a file, not a folder" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]
