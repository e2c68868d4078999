"""The scoring options, defined once: what ``run`` and ``eval`` score a prompt with.

``--mode``, ``--metric`` (repeatable), ``--weight`` (repeatable), ``--metric-timeout``,
``--judge``, ``--rubric`` and ``--description``. :func:`scoring_settings` turns
them into run settings (config keys), checked the same way for both commands,
so ``eval`` scores a prompt exactly as a run scores its held-out test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..config import load_rubric_file
from ..metric_specs import DEFAULT_OPEN_METRICS, OPEN_METRICS

MODE_OPTION = typer.Option(
    None, "--mode", metavar="MODE",
    help="auto (logprob where the task and model allow), generate (the reply is the answer) or logprob "
    "(option probabilities; multiple-choice tasks). Default: auto.",
)
METRIC_OPTION = typer.Option(
    None, "--metric", metavar="NAME_OR_PATH",
    help="A metric plug-in to compute (repeat): "
    f"{', '.join([*DEFAULT_OPEN_METRICS, *(m.name for m in OPEN_METRICS if m.name not in DEFAULT_OPEN_METRICS)])}, "
    f"or MODULE:FUNCTION (or path/to/file.py:FUNCTION). Open-ended tasks default to {' and '.join(DEFAULT_OPEN_METRICS)}.",
)
WEIGHT_OPTION = typer.Option(
    None, "--weight", metavar="NAME=W", help="Objective weight of a metric (repeat), e.g. --weight rouge_l=2.",
)
METRIC_TIMEOUT_OPTION = typer.Option(
    None, "--metric-timeout", metavar="SECONDS",
    help="Seconds one call of a MODULE:FUNCTION metric may take; a call past it is undefined on that example. Default: 30.",
)
JUDGE_OPTION = typer.Option(
    None, "--judge", metavar="SPEC",
    help="Model spec of an LLM judge that scores every answer on a rubric (metrics judge_<criterion>; weight them "
    "with --weight).",
)
RUBRIC_OPTION = typer.Option(
    None, "--rubric", metavar="FILE",
    help="The judge's rubric: a TOML or JSON file of criteria, scale, instruction, version. Default: relevance, "
    "coherence, fluency, faithfulness.",
)
DESCRIPTION_OPTION = typer.Option(
    None, "--description", metavar="TEXT",
    help="What the target task is, for the proposer and the judge (default: the task's own description).",
)


def scoring_settings(
    base: dict[str, Any],
    *,
    mode: str | None,
    metric: list[str] | None,
    weight: list[str] | None,
    metric_timeout: float | None,
    judge: str | None,
    rubric: Path | None,
    description: str | None,
) -> dict[str, Any]:
    """The run settings the scoring options give, over ``base`` (a config file's values): metrics are added to
    its, weights merged into its, the rest replace its. Values are checked by ``make_config``.

    Raises:
        ConfigError: the rubric file is unreadable or invalid; a metric file that cannot be imported as given.
        UsageError: a weight is not NAME=NUMBER.
    """
    out: dict[str, Any] = {}
    if rubric is not None:
        out["rubric"] = load_rubric_file(rubric)
    given = {"mode": mode, "judge": judge, "description": description, "metric_timeout": metric_timeout}
    out.update({k: v for k, v in given.items() if v is not None})
    if metric:
        from ..run_files import module_ref

        out["metrics"] = [*base.get("metrics", []), *(module_ref(m, what="metric") for m in metric)]
    if weight:
        from ..graph.rescore import parse_weights

        out["weights"] = {**base.get("weights", {}), **parse_weights(weight)}
    return out


__all__ = ("DESCRIPTION_OPTION", "JUDGE_OPTION", "METRIC_OPTION", "METRIC_TIMEOUT_OPTION", "MODE_OPTION",
           "RUBRIC_OPTION", "WEIGHT_OPTION", "scoring_settings")
