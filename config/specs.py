"""What a model spec implies for a run: whether it computes in this process, the precision it computes at,
whether its requests carry server parameters (``extra_body``), and the base URLs a served one is reached at.

Each rule is written here once; :mod:`tprompt.config` re-exports them.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, JsonValue

from .. import _cpu

#: How a local model computes: fp32 weights, bf16 matmuls (CPUs with native bf16 matmul), fp16 weights
#: (fp32 activations and sums) or dynamic int8 linears.
Precision = Literal["fp32", "bf16", "fp16", "int8"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "bf16", "fp16", "int8")
#: The precision of a config that names none as it is read back (every run stored before runs recorded
#: theirs computed at fp32) and of ``get_model``. A new run's default is decided where its config is made
#: (:func:`make_config`, by :func:`default_precision`).
DEFAULT_PRECISION: Precision = "fp32"


#: The kinds of model spec (``kind`` or ``kind:rest``) computed in this process, with no server: the embedded
#: model, ``hf:`` and ``fake``. The one rule for "is this model local" (the scorer's concurrency, a Ray cell's
#: resources, a run's default precision, whether a base URL applies).
IN_PROCESS_KINDS: tuple[str, ...] = ("smollm2", "hf", "fake")


def in_process_spec(spec: str | None) -> bool:
    """Whether a model spec names a model computed in this process (no server): see :data:`IN_PROCESS_KINDS`."""
    return bool(spec) and str(spec).strip().partition(":")[0] in IN_PROCESS_KINDS


def local_spec(spec: str | None) -> bool:
    """Whether a model spec names a model whose weights this process computes with (the embedded one or ``hf:``)."""
    return in_process_spec(spec) and not str(spec).strip().startswith("fake")


def default_precision(*specs: str | None) -> Precision:
    """The precision a new run or evaluation computes at when none is given: the one rule for it.

    For a run with a local model among ``specs``, the fastest precision that
    agrees with fp32's argmax on at least 97% of each bundled task of
    ``benchmarks/bench_precision.py`` on this kind of CPU (docs/benchmarks.md):
    bf16 where the CPU multiplies bf16 natively, else fp16 weights where it
    has AVX2, FMA and F16C (fbgemm's fp16 matmul), else fp32. int8 never (49-89%).
    A run records the precision it was created with, so resuming it elsewhere
    never changes its arithmetic.
    """
    if not any(s is not None and local_spec(s) for s in specs):
        return DEFAULT_PRECISION
    if _cpu.bf16_native():
        return "bf16"
    return "fp16" if _cpu.fp16_weights_fast() else DEFAULT_PRECISION



#: Request body keys tprompt sets itself (or langchain-openai sends for it): not for ``extra_body``.
RESERVED_BODY_KEYS = frozenset({
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "seed", "n",
    "logprobs", "top_logprobs", "stream", "stream_options", "tools", "tool_choice",
})


def takes_extra_body(spec: str | None) -> bool:
    """Whether requests of the model ``spec`` carry ``extra_body`` (an OpenAI-compatible server: ``openai:``)."""
    return bool(spec) and str(spec).strip().partition(":")[0] == "openai"


def check_extra_body(value: dict[str, Any]) -> dict[str, Any]:
    """``extra_body``, checked: a table of JSON values (finite numbers) with no key tprompt sets itself.

    Raises:
        ValueError: a reserved key, or a value JSON cannot carry (the message names the key).
    """
    for key, item in value.items():
        if key in RESERVED_BODY_KEYS:
            raise ValueError(f"{key} is set by tprompt itself; give only server parameters such as repeat_penalty")
        try:
            json.dumps(item, allow_nan=False)
        except (TypeError, ValueError):
            raise ValueError(f"{key}: {item!r} is not a JSON value (text, a finite number, true/false, "
                             "a list or a table of them)") from None
    return value


#: Server parameters (``extra_body``): a table of JSON values, checked by :func:`check_extra_body`.
ExtraBody = Annotated[dict[str, JsonValue], AfterValidator(check_extra_body)]

def check_base_url(url: str) -> str:
    """``url`` without surrounding spaces or a trailing slash, if it is an http(s) URL with a host.

    Raises:
        ValueError: it is not one (the message says which).
    """
    text = url.strip().rstrip("/") if isinstance(url, str) else ""
    try:
        parts = urlsplit(text)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and text.isprintable()
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{url!r} is not an http(s) URL such as http://127.0.0.1:8000/v1")
    return text


def check_base_urls(urls: list[str]) -> list[str]:
    """Several base URLs, each checked by :func:`check_base_url`: at least one, none twice.

    Raises:
        ValueError: the list is empty, holds a non-URL, or names an endpoint twice.
    """
    if not urls:
        raise ValueError("the list of base URLs is empty: give at least one, e.g. [\"http://127.0.0.1:8000/v1\"]")
    checked = [check_base_url(u) for u in urls]
    twice = next((u for i, u in enumerate(checked) if u in checked[:i]), None)
    if twice is not None:
        raise ValueError(f"{twice} is listed twice: each endpoint once (--concurrency is per endpoint)")
    return checked


def base_urls(value: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """A ``base_url`` setting as a tuple of endpoints (empty without one)."""
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)



__all__ = (
    "DEFAULT_PRECISION",
    "ExtraBody",
    "IN_PROCESS_KINDS",
    "PRECISIONS",
    "Precision",
    "RESERVED_BODY_KEYS",
    "base_urls",
    "check_base_url",
    "check_base_urls",
    "check_extra_body",
    "default_precision",
    "in_process_spec",
    "local_spec",
    "takes_extra_body",
)
