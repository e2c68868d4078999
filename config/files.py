"""Settings files (TOML, JSON or YAML): a run's config file and a judge's rubric file, read and checked."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from .._yaml import load_yaml
from ..errors import ConfigError
from ..evaluator.template import ChatTemplate
from .checks import check_values


def read_settings_file(path: str | Path, *, what: str = "config file") -> dict[str, Any]:
    """Read a TOML, JSON or YAML file whose top level is a table of keys.

    Raises:
        ConfigError: missing file, unreadable or invalid file, or not a table.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} {p} does not exist")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {p}: {exc}") from exc
    suffix = p.suffix.lower()
    try:
        if suffix == ".json":
            data = json.loads(text)
        elif suffix in (".yaml", ".yml"):
            data = load_yaml(text)
        else:
            data = tomllib.loads(text)
    except Exception as exc:  # the parsers' own error types differ; all mean "not a valid file"
        raise ConfigError(f"{what} {p}: {exc}".splitlines()[0]) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {p}: expected a table of keys at the top level")
    return data


#: The most criteria a rubric may name: each is one more judge question on every answer.
MAX_RUBRIC_CRITERIA = 50

#: The formats a settings file may be written in.
SETTINGS_SUFFIXES = (".toml", ".json", ".yaml", ".yml")


def load_rubric_file(path: str | Path) -> dict[str, Any]:
    """Read a judge's rubric (TOML, JSON or YAML: ``criteria``, ``scale``, ``instruction``, ``name``, ``version``,
    at the top level or under a ``[rubric]`` table) into the value of the config key ``rubric``, checked.

    Raises:
        ConfigError: the file is unreadable or the rubric is invalid (no criteria, a bad scale, ...).
    """
    if Path(path).suffix.lower() not in SETTINGS_SUFFIXES:
        raise ConfigError(f"rubric file {path}: a rubric is a .toml, .json or .yaml file, not "
                          f"{Path(path).suffix or 'a file without an extension'}")
    data = read_settings_file(path, what="rubric file")
    if set(data) == {"rubric"} and isinstance(data["rubric"], dict):
        data = data["rubric"]
    criteria = data.get("criteria")
    if not criteria:
        raise ConfigError(f"rubric file {path}: the rubric has no criteria: give at least one [[criteria]] "
                          "with a name and a description")
    if isinstance(criteria, list) and len(criteria) > MAX_RUBRIC_CRITERIA:
        raise ConfigError(f"rubric file {path}: {len(criteria)} criteria; give at most {MAX_RUBRIC_CRITERIA} "
                          "(each is one more judge question on every answer)")
    check_values({"rubric": data}, where=f"rubric file {path}")
    return data


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a run config file into a dict of run keys, each value checked on its own.

    ``model`` sets both ``proposer`` and ``scorer`` (as ``--model`` does) unless the
    file names them; ``prompt_file`` sets ``original_prompt`` from a text file or
    a ``tprompt export`` JSON file (as ``--prompt-file`` does). Every value is checked here, so a bad value in the file is an
    error even when a command-line option overrides it.

    Raises:
        ConfigError: the file is unreadable, has an unknown key or a bad value.
    """
    data = read_settings_file(path)
    # Allow the run keys under a [run] table as well as at the top level.
    if set(data) == {"run"} and isinstance(data["run"], dict):
        data = data["run"]
    data = dict(data)
    if "model" in data:
        model = data.pop("model")
        data.setdefault("proposer", model)
        data.setdefault("scorer", model)
    if "prompt_file" in data:
        found = _prompt_from_file(data, where=str(path))
        data["original_prompt" if isinstance(found, str) else "template"] = found
    check_values(data, where=str(path))
    return data


def _prompt_from_file(data: dict[str, Any], *, where: str) -> str | ChatTemplate:
    """``prompt_file``: the original prompt, or the template, read from a file (:func:`read_prompt_source`)."""
    from ..prompt_file import read_prompt_source

    name = data.pop("prompt_file")
    if "original_prompt" in data:
        raise ConfigError(f"{where}: give original_prompt or prompt_file, not both", key="prompt_file")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}: prompt_file: expected a file name", key="prompt_file")
    return read_prompt_source(name, what=f"{where}: prompt_file")


__all__ = ("MAX_RUBRIC_CRITERIA", "SETTINGS_SUFFIXES", "load_config_file", "load_rubric_file", "read_settings_file")
