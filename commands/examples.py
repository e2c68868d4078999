"""``tprompt examples``: the example files the docs name (templates, task rows, metric modules, a program, configs).

They ship inside the package (``tprompt/examples/``), so a wheel install has them too: listed, printed, or
copied into a folder as ``DIR/examples/...``, where the docs' commands run as printed.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Optional

import typer
from rich.text import Text

from .._text import printable
from ..errors import UsageError
from ._common import JSON_OPTION, err, out, print_json

#: The examples folder: the repository's ``examples/`` in a checkout, ``tprompt/examples/`` in a wheel.
ROOT = Path(__file__).resolve().parents[1] / "examples"


def example_files() -> list[str]:
    """Every example file, as a path relative to the examples folder (``dates/template.json``), sorted."""
    if not ROOT.is_dir():
        raise UsageError(f"no examples folder at {ROOT}: this install of tprompt lacks its package data "
                         "(reinstall it: pip install --force-reinstall tprompt)")
    return sorted(p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")


def about(name: str) -> str:
    """One line saying what an example file is: its docstring's or comment's first line, a JSONL's description."""
    try:
        first = (ROOT / name).read_text(encoding="utf-8").lstrip().splitlines()[0].strip()
    except (OSError, UnicodeDecodeError, IndexError):
        return ""
    if first.startswith('"""'):
        return first.strip('"').strip()
    if first.startswith("#"):
        return first.lstrip("#").strip()
    if name.endswith(".jsonl"):
        try:
            head = json.loads(first)
        except ValueError:
            return ""
        if isinstance(head, dict) and isinstance(head.get("description"), str):
            return f"task rows: {head['description']}"
    return ""


def select(name: str | None) -> list[str]:
    """The example files ``name`` names: one file, or every file under a folder (all without a name)."""
    files = example_files()
    if name is None:
        return files
    wanted = name.strip("/").removeprefix("examples/")  # as the docs name them: examples/judge.toml
    chosen = [f for f in files if f == wanted or f.startswith(wanted + "/")]
    if not chosen:
        tops = sorted({f.split("/")[0] for f in files})
        raise UsageError(f"no example named {name!r}; the examples are: {', '.join(tops)} (list them: tprompt examples)")
    return chosen


def copy_examples(files: list[str], into: Path) -> Path:
    """Copy ``files`` to ``into/examples/``; refuses, writing nothing, when one of them exists there already."""
    if into.exists() and not into.is_dir():
        raise UsageError(f"--copy {into}: a file, not a folder; give a folder to copy the examples into")
    dest = into / "examples"
    for name in files:
        if (dest / name).exists() or (dest / name).is_symlink():
            raise UsageError(f"--copy {into}: {dest / name} exists already; nothing was copied "
                             "(copy into another folder, or remove it first)")
    for name in files:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((ROOT / name).read_bytes())
    return dest


def examples_cmd(
    name: Optional[str] = typer.Argument(None, metavar="[NAME]",
                                         help="An example file (printed) or folder (listed), e.g. dates/template.json or dates."),
    copy: Optional[Path] = typer.Option(None, "--copy", metavar="DIR",
                                        help="Copy the examples (or NAME's) into DIR/examples/, where the docs' commands run as printed."),
    json_: bool = JSON_OPTION,
) -> None:
    """List, print or copy the example files the docs name: templates, task rows, metric modules, a program, configs.

    They ship with tprompt (a wheel install has them). `--copy DIR` writes DIR/examples/..., never over a file.

    Example: tprompt examples dates/template.json ; tprompt examples --copy .
    """
    files = select(name)
    if copy is not None:
        dest = copy_examples(files, copy)
        if json_:
            print_json({"copied": [str(dest / f) for f in files]})
            return
        err.print(Text(f"copied {len(files)} example file(s) to {printable(str(dest))}"), soft_wrap=True)
        err.print(Text(f"the docs' commands naming examples/... run as printed from {printable(shlex.quote(str(copy)))}"),
                  soft_wrap=True)
        return
    if json_:
        print_json([{"name": f, "path": str(ROOT / f), "about": about(f)} for f in files])
        return
    if name is not None and len(files) == 1 and not (ROOT / name.strip("/").removeprefix("examples/")).is_dir():
        out.file.write((ROOT / files[0]).read_text(encoding="utf-8"))
        return
    width = max(len(f) for f in files)
    for f in files:
        out.print(Text(f"{f:<{width}}  {about(f)}".rstrip()), soft_wrap=True)
    err.print(Text(f"in {printable(str(ROOT))}; print one: tprompt examples NAME; copy them: tprompt examples --copy DIR"),
              soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("examples")(examples_cmd)
