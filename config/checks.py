"""Values checked into a :class:`RunConfig`: each value on its own (:func:`check_values`), the whole
(:func:`make_config`), and the rule of which stages a run has (:func:`stage_rule`).
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any

from pydantic import ValidationError

from ..errors import ConfigError, UsageError, first_error
from .run import MAX_CONCURRENCY, MAX_REQUEST_TIMEOUT, RunConfig
from .specs import default_precision


def check_target_only(target_only: bool, sources: list[str] | None, *,
                      names: tuple[str, str] = ("--target-only", "--source")) -> None:
    """A run asked to be target-only names no source task (the CLI's options, the new-run form's fields).

    Raises:
        UsageError: it does; ``names`` are how the caller calls the two.
    """
    if target_only and sources:
        raise UsageError(f"{names[0]} runs no source stage, so it takes no {names[1]}",
                         hint=f"leave out {names[1]}, or {names[0]} to transfer from the sources")


def check_execution_options(concurrency: int | None, request_timeout: float | None) -> None:
    """This execution's ``--concurrency`` and ``--request-timeout`` (None: not given) within the bounds of the
    run settings they override (:class:`RunConfig`'s ``concurrency`` and ``request_timeout``).

    Raises:
        UsageError: one of them is out of bounds (one line naming the option).
    """
    if concurrency is not None and not 1 <= concurrency <= MAX_CONCURRENCY:
        raise UsageError(f"--concurrency must be between 1 and {MAX_CONCURRENCY}, not {concurrency}")
    if request_timeout is not None and not 0 < request_timeout <= MAX_REQUEST_TIMEOUT:
        raise UsageError(f"--request-timeout must be a positive number of seconds (at most {MAX_REQUEST_TIMEOUT:g}), "
                         f"not {request_timeout:g}")


def stage_rule(values: dict[str, Any], *, target_only: bool = False) -> dict[str, Any]:
    """``values`` with the rule of which stages a run has applied (one rule, for the CLI and the TUI).

    No source stage unless sources are named or the run is the bundled demo: a run that names a target
    but no source task is target-only (``transfer = false``, no source tasks); a run naming neither is
    the demo (ai2_science -> arc_challenge). An explicit ``transfer`` setting is kept as given.
    ``target_only`` (``--target-only``, the new-run form's box; see :func:`check_target_only`) asks for no
    source stage, over a settings file's sources.
    """
    if target_only:
        return {**values, "transfer": False, "source_tasks": []}
    if "transfer" in values:
        return values
    named = values.get("source_tasks")
    if named or ("source_tasks" not in values and "target_task" not in values):
        return values
    return {**values, "transfer": False, "source_tasks": []}


def checked_config(values: dict[str, Any], *, where: str = "options") -> RunConfig:
    """Validate ``values`` into a :class:`RunConfig` as given, deciding no default for this machine: its
    ``model_fields_set`` are the keys of ``values`` (an experiment's ``[run]`` table is kept so).

    Raises:
        ConfigError: an unknown key, a bool where a number belongs, or any other invalid value (one line).
    """
    _check_keys(values, where)
    for key, value in values.items():
        _check_not_bool(key, value, where)
    try:
        return RunConfig(**values)
    except ValidationError as exc:
        raise ConfigError(first_error(exc, where=where)) from exc


def make_config(values: dict[str, Any], *, where: str = "options") -> RunConfig:
    """Validate ``values`` into a new run's :class:`RunConfig`; one clear ConfigError on any problem."""
    config = checked_config(values, where=where)
    if "precision" not in values:  # a new config: this machine's default, written into it
        precision = default_precision(config.proposer, config.scorer, config.judge)
        if precision != config.precision:
            config = config.model_copy(update={"precision": precision})
    return config


def check_values(values: dict[str, Any], *, where: str) -> None:
    """Check each value against its field alone (type and bounds; no cross-field rules).

    Raises:
        ConfigError: an unknown key, a bool where a number belongs, or a value out of bounds.
    """
    from pydantic import TypeAdapter

    _check_keys(values, where)
    for key, value in values.items():
        field = RunConfig.model_fields[key]
        _check_not_bool(key, value, where)
        try:
            kind: Any = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
            TypeAdapter(kind).validate_python(value)
        except ValidationError as exc:
            raise ConfigError(first_error(exc, where=where, prefix=(key,)), key=key) from exc


def _check_not_bool(key: str, value: Any, where: str) -> None:
    # pydantic would take true as 1 for a number field; a config value that is a bool is a mistake there.
    annotation = RunConfig.model_fields[key].annotation
    if isinstance(value, bool) and annotation is not bool:
        raise ConfigError(f"{where}: {key}: expected {_kind(annotation)}, got {str(value).lower()}", key=key)


def _kind(annotation: Any) -> str:
    return {int: "a whole number", float: "a number", str: "text"}.get(annotation, str(annotation))


def _check_keys(values: dict[str, Any], where: str) -> None:
    unknown = [k for k in values if k not in RunConfig.model_fields]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, [*RunConfig.model_fields, "model", "prompt_file"], n=1)
        hint = f"did you mean {close[0]!r}?" if close else "known keys: " + ", ".join(RunConfig.model_fields)
        raise ConfigError(f"{where}: unknown key {key!r}", hint=hint, key=key)


__all__ = ("check_execution_options", "check_target_only", "check_values", "checked_config", "make_config", "stage_rule")
