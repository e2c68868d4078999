"""Text from a model or a user, made safe to print: control characters shown, never obeyed.

One rule for every place that writes such text to a terminal or a report: ESC (and so
CSI/OSC sequences), BEL, CR, backspace, DEL and the C1 range are replaced by a visible
escape (``\\x1b``), so a model's answer can neither colour, move, retitle nor clear the
user's terminal. Newlines and tabs stay (multi-line prompts keep their shape).
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with every control character except newline and tab written as ``\\xNN``."""
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


__all__ = ("printable",)
