"""The model options, defined once: every command that takes a model spec takes these.

``--model`` (the spec), ``--base-url``, ``--precision`` (local models),
``--concurrency`` and ``--request-timeout``; ``--extra-body`` (server parameters) on ``run`` and ``eval``. Commands that continue a run whose model is pinned in
its config (``resume``, ``experiment``, ``replay --rerun``) take the two that
change how calls are made, not what they answer: ``--concurrency`` and
``--request-timeout``.
"""

from __future__ import annotations

import json
from typing import Any

import typer

from ..config import check_base_url, check_execution_options
from ..errors import UsageError

MODEL_OPTION = typer.Option(
    None, "--model", "-m", metavar="SPEC",
    help="Model spec (of the proposer and the scorer both, where there are two): smollm2 (default), "
    "hf:<dir or id>, openai:<model>, anthropic:<model>, ollama:<model>, fake, ...",
)
BASE_URL_OPTION = typer.Option(
    None, "--base-url", metavar="URL",
    help="API root of an OpenAI-compatible server for openai:MODEL specs, e.g. http://127.0.0.1:8000/v1 "
    "(default: OPENAI_BASE_URL). No key needed for a local server. Repeat it for several endpoints of the "
    "same model and revision (replicas): requests are spread over them and fail over.",
)
PRECISION_OPTION = typer.Option(
    None, "--precision", metavar="fp32|bf16|fp16|int8",
    help="How a local model (smollm2, hf:...) computes: fp32, bf16 (bf16 matmuls; the default on CPUs with native "
    "bf16 matmul), fp16 (fp16 weights, fp32 activations; the default on other CPUs with AVX2) or int8 (dynamic int8 "
    "linears: answers differ more; see docs/models.md). Part of the cache key.",
)
CONCURRENCY_OPTION = typer.Option(
    None, "--concurrency", metavar="N",
    help="Requests in flight at once to an API model, on each of its endpoints (default 4).",
)
REQUEST_TIMEOUT_OPTION = typer.Option(
    None, "--request-timeout", metavar="SECONDS",
    help="Seconds to wait for one request to an API model before it is retried (default 180); "
    "raise it for a slow self-hosted model.",
)


#: One clear UsageError for a value the model options cannot take (the bounds of the run settings they set).
check_model_options = check_execution_options


def base_url_setting(urls: list[str] | None) -> str | list[str] | None:
    """The run setting ``base_url`` from repeated ``--base-url``: None, one URL as a string, several as a list.

    Raises:
        UsageError: a value is not an http(s) URL, or one is given twice.
    """
    if not urls:
        return None
    checked: list[str] = []
    for url in urls:
        try:
            checked.append(check_base_url(url))
        except ValueError as exc:
            raise UsageError(f"--base-url: {exc}") from exc
        if checked[-1] in checked[:-1]:
            raise UsageError(f"--base-url: {checked[-1]} is given twice: give each endpoint once "
                             "(--concurrency is per endpoint)")
    return checked[0] if len(checked) == 1 else checked


EXTRA_BODY_OPTION = typer.Option(
    None, "--extra-body", metavar="JSON",
    help="Server parameters sent in the body of every request to openai:MODEL specs, as a JSON object, e.g. "
    "'{\"repeat_penalty\": 1.0}' (llama.cpp, Ollama); merged over a --config file's extra_body; part of the cache key.",
)


def extra_body_setting(text: str | None, base: dict[str, Any]) -> dict[str, Any] | None:
    """The run setting ``extra_body`` from ``--extra-body JSON``, merged over ``base`` (a config file's values);
    None without the option. The values are checked by ``make_config`` (reserved keys, JSON values).

    Raises:
        UsageError: the text is not a JSON object.
    """
    if text is None:
        return None
    example = "give one such as '{\"repeat_penalty\": 1.0}'"
    try:
        found = json.loads(text)
    except ValueError as exc:
        detail = f"{exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise UsageError(f"--extra-body: not JSON ({detail}); {example}") from exc
    if not isinstance(found, dict):
        kind = {list: "an array", str: "a string", bool: "true/false", type(None): "null"}.get(type(found), "a number")
        raise UsageError(f"--extra-body: expected a JSON object, not {kind}; {example}")
    return {**(base.get("extra_body") or {}), **found}
