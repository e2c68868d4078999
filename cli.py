"""The ``tprompt`` command line.

Commands live in ``commands/``, one module per area, each with a
``register(app)``; this module holds the app, the global options and the one
place where errors become a line on stderr and an exit code.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Optional

import typer
from rich.text import Text

try:  # typer >= 0.20 vendors click
    from typer._click import exceptions as _click_exc
except ImportError:  # pragma: no cover - older typer on real click
    from click import exceptions as _click_exc  # type: ignore[no-redef]

from . import __version__
from ._signals import pause_when_driver_gone
from .commands._common import ACTIVE_DB, DEFAULT_DB, ExitCode, Settings, err, with_db
from .errors import TPromptError

#: Modules under ``tprompt.commands`` that add commands, in help order.
COMMAND_MODULES: tuple[str, ...] = (
    "run",
    "history",
    "fork",
    "export",
    "graph",
    "evaluate",
    "transcripts",
    "ui",
    "experiment",
    "merge",
    "trace",
    "examples",
)

#: The app without its commands; :func:`_full_app` adds them (``tprompt --version`` needs none of them).
_app = typer.Typer(
    name="tprompt",
    help="Transfer-Prompting with an event log: optimize prompts on source tasks, transfer them "
    "to a target task, and pause, resume, replay, fork and inspect every run.",
    rich_markup_mode="rich",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tprompt {__version__}")
        raise typer.Exit()


@_app.callback()
def _root(
    ctx: typer.Context,
    db: Optional[Path] = typer.Option(
        None,
        "--db",
        envvar="TPROMPT_DB",
        help=f"The tprompt database (SQLite). Default: ./{DEFAULT_DB}.",
        show_default=False,
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    ctx.obj = Settings(db_path=db or Path(DEFAULT_DB))
    ACTIVE_DB.set(ctx.obj.db_path)


def _no_flag_type(self: typer.core.TyperOption, ctx: Any) -> str | None:
    # A flag takes no value: help shows no "<bool>" next to it.
    return None if self.is_flag else _option_type(self, ctx)


_option_type = typer.core.TyperOption.display_type_rich
typer.core.TyperOption.display_type_rich = _no_flag_type  # type: ignore[method-assign]

#: The module that adds each command (``tests/test_cli_startup.py`` checks it against the modules): a command
#: imports its own module only, so ``tprompt runs`` loads neither the graph nor the models nor the scorer.
COMMAND_OF: dict[str, str] = {
    "run": "run", "resume": "run", "pause": "run", "show": "run",
    "runs": "history", "events": "history", "replay": "history", "compare": "history",
    "fork": "fork", "export": "export",
    "graph": "graph", "review": "graph", "rescore": "graph",
    "eval": "evaluate", "tasks": "evaluate",
    "transcript": "transcripts", "ui": "ui",
    "experiment": "experiment", "report": "experiment",
    "merge": "merge", "trace": "trace", "examples": "examples",
}

#: module -> the commands it added to ``_app`` (in the order it added them).
_registered: dict[str, list[Any]] = {}


def _register(module: str) -> None:
    if module not in _registered:
        before = len(_app.registered_commands)
        importlib.import_module(f"{__package__}.commands.{module}").register(_app)
        _registered[module] = _app.registered_commands[before:]


def _full_app() -> typer.Typer:
    """The app with every command registered (each command module imported once, on first use), in help order."""
    for name in COMMAND_MODULES:
        _register(name)
    _app.registered_commands = [c for name in COMMAND_MODULES for c in _registered[name]]
    return _app


def _app_for(args: list[str]) -> typer.Typer:
    """The app with just the command ``args`` names registered; every command for help or a name it lacks."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--db":
            i += 2
        elif arg.startswith("--db="):
            i += 1
        elif arg.startswith("-"):  # --help, --version, a typo: the whole app answers
            break
        else:
            module = COMMAND_OF.get(arg)
            if module is None:
                break
            _register(module)
            return _app
    return _full_app()


def __getattr__(name: str) -> typer.Typer:
    # ``from tprompt.cli import app`` gives the app with its commands.
    if name == "app":
        return _full_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _click_line(exc: _click_exc.ClickException) -> str:
    """An option-parsing error as the rest of the CLI words errors: one line, with where to look."""
    message = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and ctx.command_path:
        return f"{message} (see `{ctx.command_path} --help`)"
    return f"{message} (see `tprompt --help`)"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tprompt`` script; returns (and exits with) the exit code."""
    if not sys.warnoptions and not os.environ.get("TPROMPT_DEBUG"):
        # Libraries' deprecation notices are for us, not for the user's terminal or --json output.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if (sys.argv[1:] if argv is None else argv) == ["--version"]:
        # Answered before any command module is imported: it uses none of them.
        typer.echo(f"tprompt {__version__}")
        if argv is None:
            sys.exit(ExitCode.OK)
        return ExitCode.OK
    pause_when_driver_gone()  # a grid's child run: paused, not orphaned, if its driver is killed
    try:
        result = _app_for(sys.argv[1:] if argv is None else list(argv))(args=argv, prog_name="tprompt",
                                                                          standalone_mode=False)
        code = int(result) if isinstance(result, int) else 0
    except TPromptError as exc:
        # The message is literal text: it may quote user input or `pip install 'x[extra]'`.
        err.print(Text.assemble(("error: ", "bold red"), with_db(str(exc))), soft_wrap=True)
        code = exc.exit_code
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        err.print("interrupted")
        code = ExitCode.INTERRUPTED
    except _click_exc.ClickException as exc:
        err.print(Text.assemble(("error: ", "bold red"), _click_line(exc)), soft_wrap=True)
        code = exc.exit_code
    except KeyboardInterrupt:
        err.print("interrupted")
        code = ExitCode.INTERRUPTED
    except BrokenPipeError:
        # stdout closed early (e.g. piped into `head`): not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = ExitCode.OK
    if __name__ == "__main__" or argv is None:
        sys.exit(code)
    return code


if __name__ == "__main__":
    main()
