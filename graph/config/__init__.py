"""The run configuration, re-exported where the graph's code and users have always imported it.

:class:`~tprompt.config.RunConfig` lives in :mod:`tprompt.config`, below the
stores, since the ``run.created`` and ``run.forked`` events carry it typed.
"""

from ...config import (
    DEFAULT_ORIGINAL_PROMPT,
    Budget,
    Mode,
    RunConfig,
    check_values,
    load_config_file,
    make_config,
    read_settings_file,
)

__all__ = (
    "DEFAULT_ORIGINAL_PROMPT",
    "Budget",
    "Mode",
    "RunConfig",
    "check_values",
    "load_config_file",
    "make_config",
    "read_settings_file",
)
