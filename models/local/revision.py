"""The revision of a local model's weights: part of every cache key its answers are stored under."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def dir_revision(source: str | os.PathLike[str]) -> str | None:
    """The revision of a model directory (its files' names and sizes, and its config), or None if not one."""
    path = Path(source)
    if not path.is_dir():
        return None
    digest = hashlib.sha256()
    for name in sorted(p.name for p in path.iterdir() if p.is_file()):
        stat = (path / name).stat()
        digest.update(f"{name}:{stat.st_size};".encode())
    config = path / "config.json"
    if config.is_file():
        digest.update(config.read_bytes())
    return "dir-" + digest.hexdigest()[:16]


def revision_of(source: str | os.PathLike[str], model) -> str:
    """The revision of ``model`` loaded from ``source``: the directory's, else the hub commit's (or its config's hash)."""
    local = dir_revision(source)
    if local is not None:
        return local
    commit = getattr(model.config, "_commit_hash", None)
    if commit:
        return f"hub-{commit}"
    return "hub-" + hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:16]


__all__ = ("dir_revision", "revision_of")
