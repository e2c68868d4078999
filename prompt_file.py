"""A prompt read from a file: a ``tprompt export`` JSON file, a LangChain export of one, or text.

``tprompt run --prompt-file``, ``eval --prompt-file`` and a config file's
``prompt_file`` key read through :func:`read_prompt_file`; ``tprompt export``
(:mod:`tprompt.export`) writes the JSON format it recognizes.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import UsageError

#: The ``format`` field of a JSON export: how a file says it is one.
EXPORT_FORMAT = "tprompt.prompt"
#: Bumped when a field changes meaning or goes away (new fields do not bump it).
EXPORT_FORMAT_VERSION = 1
#: A prompt file larger than this is refused (a prompt is text of a few KB, not a data file).
MAX_PROMPT_FILE_BYTES = 1 << 20


def read_prompt_file(path: str | Path, *, what: str = "prompt file") -> str:
    """The prompt in ``path``: a JSON export of tprompt (its ``prompt``), a LangChain export of one, or text.

    A ``.json`` file must be an export (it is recognized by its ``format``
    field); any other file is the prompt itself, stripped of surrounding
    whitespace. Only regular files are read (a FIFO or a device would hang or
    never end), up to :data:`MAX_PROMPT_FILE_BYTES`.

    Raises:
        UsageError: the file cannot be read, is empty, or is a JSON file that is not an export (or a newer one).
    """
    p = Path(path)
    try:
        if not p.is_file():
            reason = "no such file" if not p.exists() else "not a regular file"
            raise UsageError(f"cannot read {what} {p}: {reason}", hint="give the path of a text or JSON file")
        if p.stat().st_size > MAX_PROMPT_FILE_BYTES:
            raise UsageError(f"{what} {p} is larger than {MAX_PROMPT_FILE_BYTES >> 20} MB",
                             hint="a prompt file holds one prompt")
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {what} {p}: {exc}") from exc
    if p.suffix.lower() == ".json":
        prompt = _prompt_of_export(text, p, what)
    else:
        prompt = text.strip()
    if not prompt.strip():
        raise UsageError(f"{what} {p} is empty", hint="write the prompt into it")
    return prompt


def _prompt_of_export(text: str, p: Path, what: str) -> str:
    not_export = UsageError(
        f'{what} {p} is not a prompt exported by tprompt (no "format": "{EXPORT_FORMAT}")',
        hint="write it with `tprompt export RUN --format json`, or give the prompt as a .txt file",
    )
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{what} {p}: not valid JSON ({exc})",
                         hint="give a `tprompt export` JSON file, or the prompt as a .txt file") from exc
    if isinstance(data, dict) and data.get("lc") == 1:  # langchain_core.load.dumps of our template
        data = ((data.get("kwargs") or {}).get("metadata") or {}).get("tprompt")
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        raise not_export
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version > EXPORT_FORMAT_VERSION:
        raise UsageError(f"{what} {p}: export format version {version!r}, this tprompt reads up to "
                         f"{EXPORT_FORMAT_VERSION}", hint="upgrade tprompt")
    prompt = data.get("prompt")
    if not isinstance(prompt, str):
        raise UsageError(f"{what} {p}: its \"prompt\" is not text", hint="export it again with tprompt export")
    return prompt


__all__ = ("EXPORT_FORMAT", "EXPORT_FORMAT_VERSION", "MAX_PROMPT_FILE_BYTES", "read_prompt_file")
