"""This execution's --concurrency and --request-timeout are held to the bounds of the run settings they
override, by one rule (config.check_execution_options): the commands' check, ExecutionOptions and RunConfig agree."""

from __future__ import annotations

from contextlib import nullcontext

import pytest
from pydantic import ValidationError

from tprompt.commands._model_options import check_model_options
from tprompt.config import RunConfig, check_execution_options
from tprompt.errors import UsageError
from tprompt.graph.resources import ExecutionOptions


def _config_takes(**values: object) -> bool:
    try:
        RunConfig(**values)  # type: ignore[arg-type]
    except ValidationError:
        return False
    return True


def _option_takes(**values: object) -> bool:
    try:
        check_execution_options(values.get("concurrency"), values.get("request_timeout"))  # type: ignore[arg-type]
    except UsageError:
        return False
    return True


@pytest.mark.parametrize("values", [{"concurrency": c} for c in (0, 1, 64, 65)]
                         + [{"request_timeout": t} for t in (0.0, 0.5, 86_400.0, 86_401.0)])
def test_the_options_take_what_the_run_settings_take(values: dict[str, object]) -> None:
    assert _option_takes(**values) == _config_takes(**values)
    with pytest.raises(UsageError) if not _option_takes(**values) else nullcontext():
        ExecutionOptions(**values)  # type: ignore[arg-type]


def test_the_commands_check_is_the_one_rule() -> None:
    assert check_model_options is check_execution_options
    with pytest.raises(UsageError, match=r"^--concurrency must be between 1 and 64, not 65$"):
        check_model_options(65, None)

