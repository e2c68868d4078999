"""One typed configuration for a Transfer-Prompting run.

Everything a run needs to be re-executed is in :class:`RunConfig`; it is stored
whole in the ``run.created`` event, so ``replay --rerun`` and ``resume`` need
nothing but the log. It sits below the stores (the events carry it typed);
:mod:`tprompt.graph.config` re-exports it for the code that imports it there.

- :mod:`.run`: :class:`RunConfig`, its fields and the rules over several of them;
- :mod:`.specs`: what a model spec implies (in-process, precision, server parameters, base URLs);
- :mod:`.checks`: values checked into a config (:func:`make_config`), the stages a run has;
- :mod:`.files`: config and rubric files (TOML, JSON, YAML).
"""

from __future__ import annotations

from .checks import check_execution_options, check_target_only, check_values, checked_config, make_config, stage_rule
from .files import MAX_RUBRIC_CRITERIA, SETTINGS_SUFFIXES, load_config_file, load_rubric_file, read_settings_file
from .run import (
    DEFAULT_METRIC_TIMEOUT,
    DEFAULT_ORIGINAL_PROMPT,
    DEFAULT_PROGRAM_TIMEOUT,
    DEFAULT_REQUEST_TIMEOUT,
    MAX_CONCURRENCY,
    MAX_REQUEST_TIMEOUT,
    Budget,
    Mode,
    ParentSelection,
    Price,
    ProposerStyle,
    RecordedFile,
    RunConfig,
    Weight,
)
from .specs import (
    DEFAULT_PRECISION,
    IN_PROCESS_KINDS,
    PRECISIONS,
    RESERVED_BODY_KEYS,
    ExtraBody,
    Precision,
    base_urls,
    check_base_url,
    check_base_urls,
    check_extra_body,
    default_precision,
    in_process_spec,
    local_spec,
    takes_extra_body,
)

__all__ = (
    "Budget",
    "DEFAULT_METRIC_TIMEOUT",
    "DEFAULT_ORIGINAL_PROMPT",
    "DEFAULT_PROGRAM_TIMEOUT",
    "DEFAULT_PRECISION",
    "DEFAULT_REQUEST_TIMEOUT",
    "ExtraBody",
    "IN_PROCESS_KINDS",
    "MAX_CONCURRENCY",
    "MAX_REQUEST_TIMEOUT",
    "MAX_RUBRIC_CRITERIA",
    "Mode",
    "PRECISIONS",
    "ParentSelection",
    "Precision",
    "Price",
    "ProposerStyle",
    "RESERVED_BODY_KEYS",
    "RecordedFile",
    "RunConfig",
    "SETTINGS_SUFFIXES",
    "Weight",
    "base_urls",
    "check_base_url",
    "check_base_urls",
    "check_execution_options",
    "check_extra_body",
    "check_target_only",
    "check_values",
    "checked_config",
    "default_precision",
    "in_process_spec",
    "load_config_file",
    "load_rubric_file",
    "local_spec",
    "make_config",
    "read_settings_file",
    "stage_rule",
    "takes_extra_body",
)
