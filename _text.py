"""Text from a model or a user, made safe to print: control characters shown, never obeyed.

One rule for every place that writes such text to a terminal or a report (the CLI's
consoles, ``--json``, the terminal UI, report plots): ESC (and so CSI/OSC/DCS sequences),
BEL, CR, backspace, DEL and the C1 range are replaced by a visible escape (``\\x1b``), so
a model's answer can neither colour, move, retitle nor clear the user's terminal, and a
user still sees that the text holds them. Newlines and tabs stay (multi-line prompts keep
their shape).
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with every control character except newline and tab written as ``\\xNN``."""
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def printable_json(text: str) -> str:
    """JSON text (as ``json.dumps`` writes it) with the same characters written as ``\\u00NN`` escapes.

    ``json.dumps(..., ensure_ascii=False)`` escapes C0 but leaves DEL and C1 (U+009B is
    a one-character CSI) raw. Outside strings JSON holds only ASCII punctuation and
    whitespace, so every match is inside a string, where the escape decodes to the
    same character: the data is unchanged, the terminal sees no control character.
    """
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


__all__ = ("printable", "printable_json")
