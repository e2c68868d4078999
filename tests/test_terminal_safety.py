"""Text from a model or a user never drives the terminal (issue 12, item 5): ESC, CSI, OSC,
BEL and CR in prompts and model answers reach no command's output raw."""

from __future__ import annotations

import json
from pathlib import Path

from test_graph import cli_args, tprompt

from tprompt._text import printable
from tprompt.stores import EventLog
from tprompt.stores.transcripts import NewCall, TranscriptStore

EVIL = "Answer.\x1b[31mRED\x1b]0;pwned\x07 \x1b[2J\rX\x9b1m\x08"
RAW = ("\x1b", "\x07", "\r", "\x9b", "\x08")


def test_printable_shows_control_characters() -> None:
    assert printable("a\x1b[31mb\x07\r\n\tc\x9b") == "a\\x1b[31mb\\x07\\x0d\n\tc\\x9b"
    assert printable("plain text\nand lines") == "plain text\nand lines"


def _assert_clean(proc, what: str) -> None:  # type: ignore[no-untyped-def]
    for stream, text in (("stdout", proc.stdout), ("stderr", proc.stderr)):
        bad = [c for c in RAW if c in text]
        assert not bad, f"{what}: {stream} carries {bad!r}"


def test_no_command_prints_raw_control_characters(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    args = cli_args()
    proc = tprompt(db, "run", *args, "--prompt", EVIL)
    _assert_clean(proc, "run")
    log = EventLog(db)
    (run,) = log.runs()
    # A model answer with escapes, as a scorer call of the run.
    store = TranscriptStore(db)
    body = json.dumps({"kind": "chat", "messages": [["user", EVIL]]})
    store.record([NewCall(call_id="c-evil", run_id=run.run_id, seq=2, step="source:0", agent="scorer", model="fake",
                          kind="chat", cache_key="k-evil", request=body, response=EVIL, prompt_tokens=1,
                          completion_tokens=1, latency_s=0.1, cache_hit=False, error=EVIL)])
    store.close()
    for command in (
        ["show", run.run_id], ["events", run.run_id], ["replay", run.run_id, "--to", "3"],
        ["transcript", run.run_id], ["transcript", run.run_id, "--call", "c-evil"], ["runs"],
        ["report", run.run_id, "--out", str(tmp_path / "report")],
    ):
        _assert_clean(tprompt(db, *command), " ".join(command[:1]))
    report = (tmp_path / "report" / "report.md").read_text()
    assert not [c for c in RAW if c in report]


def test_json_output_escapes_c1_and_del(tmp_path: Path) -> None:
    """``--json`` leaves no raw control character either: U+009B alone is a CSI to many terminals (issue 19)."""
    from conftest import run_created

    db = tmp_path / "t.db"
    name = "n \x9b2J \x9d0;title\x07 \x7f \x1b[31m \x85"
    with EventLog(db) as log:
        run_id = log.create_run(run_created(name))
    for command in (["runs", "--json"], ["show", run_id, "--json"]):
        proc = tprompt(db, *command)
        _assert_clean(proc, " ".join(command))
        assert "\\u009b2J \\u009d0;title\\u0007 \\u007f \\u001b[31m \\u0085" in proc.stdout
        data = json.loads(proc.stdout)  # the escapes decode to the same text: the data is unchanged
        found = data[0]["name"] if isinstance(data, list) else data["name"]
        assert found == name


def test_report_on_a_hostile_model_name_prints_no_raw_escape(hostile: Path, tmp_path: Path) -> None:
    """matplotlib warns on stderr about every glyph it lacks, with the raw character: titles are escaped first."""
    from _tui_db import EVIL_RUN

    out = tmp_path / "report"
    proc = tprompt(hostile, "report", EVIL_RUN, "--out", str(out))
    _assert_clean(proc, "report")
    assert "Glyph" not in proc.stderr, proc.stderr
    assert list(out.glob("*-curves.png"))  # the plot whose title names the model was drawn
    assert "\\x1b]0;pwned-title\\x07" in (out / "report.md").read_text()
