"""A benchmark's own virtual environment: what it compares against is never a dependency of tprompt.

Used by bench_lm_eval.py (lm-evaluation-harness) and head_to_head.py (DSPy). The
environment lives outside any clone (``~/.cache/tprompt/<name>`` by default) and
is made on first use with the benchmark's pip installs; the other side is then
driven there in a subprocess.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

CACHE = Path.home() / ".cache" / "tprompt"


def own_python(venv: Path, *, probe: str, installs: Sequence[Sequence[str]], what: str) -> Path:
    """The python of ``venv``, made first (``python -m venv`` and each ``pip install`` of ``installs`` in turn)
    unless it already imports every module of ``probe`` (comma-separated)."""
    python = venv / "bin" / "python"
    if python.exists() and subprocess.run([python, "-c", f"import {probe}"], capture_output=True).returncode == 0:
        return python
    print(f"installing {what} in {venv} (its own environment; a few minutes)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    for packages in installs:
        subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], check=True)
    return python
