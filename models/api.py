"""API models through langchain's ``init_chat_model`` (openai, anthropic, ollama, ...).

The provider package is an optional extra, checked before anything is built.
The API key is read by the provider package from the environment and never
passed through, stored or logged by tprompt; a ``base_url`` (an
OpenAI-compatible server: vLLM, llama.cpp's server, ``transformers serve``,
Ollama's ``/v1``) needs no key, a placeholder is sent. The base URL is part of
the backend's ``revision`` and so of every cache key: two servers never share
answers.

Several base URLs (a list) are several endpoints of one model: vLLM
data-parallel replicas, or several servers. Requests are spread over them
(:mod:`._endpoints`), at most ``concurrency`` in flight on each; a request that
fails on one with a retryable error (a lost connection, a 5xx, a 429, a
timeout) is sent again at once to another, and the failing endpoint sits out a
short cool-down. Only when every endpoint has failed do the retry rules below
apply, as with one endpoint. The revision names the set of URLs (in any order),
never the endpoint that answered, so the endpoints must serve the same model
and revision. Whether log-probabilities come back is probed once, on whichever
endpoint, for all: they are assumed to be the same kind of server.

Requests go out in parallel, at most ``concurrency`` at a time per run and
endpoint (across examples and candidates: the bound is held by each run's view
of the backend, :meth:`ApiBackend.for_run`; the clients and their connections
are shared by every run of the process).

Every request to an OpenAI-compatible server waits at most ``request_timeout``
seconds (default :data:`~.backend.DEFAULT_REQUEST_TIMEOUT`) for its answer. A
429, a 5xx or a lost connection is retried here up to :data:`CLIENT_RETRIES`
times, waiting what the server's ``Retry-After`` asks; a timed-out request is
not retried here but raised at once as a :class:`TransientBackendError`, so the
recorder retries it like a 503 (a few attempts, with backoff) instead of the
client and the recorder multiplying their retries of a hung server. A request
that still fails carries the ``retry_after`` the server last asked for, so the
recorder's own retries wait at least that long. Other providers' clients
(anthropic, ollama, ...) keep their own retries and timeouts.

A reply without the answer in it (no ``choices``, or an empty list) is a
:class:`BackendError` naming the server and what was missing.

Option probabilities (``supports_option_probs``) come from one short
completion per question: ``max_tokens=1`` with ``logprobs`` and
``top_logprobs=20``; the options' first-token probabilities are renormalized
over the options. Whether the server returns log-probabilities is probed once
(OpenAI and vLLM do; ``transformers serve`` ignores the fields), the probe retried
like any call; a run records the answer in its config (``server_logprobs``), and a
resumed run tells the backend (:meth:`ApiBackend.assume_logprobs`) instead of asking again.
"""

from __future__ import annotations

import copy
import email.utils
import importlib.util
import json
import math
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from ..config import DEFAULT_REQUEST_TIMEOUT
from ..errors import BackendError, MissingCredentials, MissingExtra, TransientBackendError
from ._endpoints import Health, Slots
from ._retry import with_retries
from .base import ChatBackend
from .pricing import price_for
from .types import ChatRequest, OptionsRequest

#: provider -> (python module, pip requirement, tprompt extra or None, API key env var or None)
PROVIDERS: dict[str, tuple[str, str, str | None, str | None]] = {
    "openai": ("langchain_openai", "langchain-openai", "openai", "OPENAI_API_KEY"),
    "anthropic": ("langchain_anthropic", "langchain-anthropic", "anthropic", "ANTHROPIC_API_KEY"),
    "ollama": ("langchain_ollama", "langchain-ollama", "ollama", None),
    "google_genai": ("langchain_google_genai", "langchain-google-genai", None, "GOOGLE_API_KEY"),
    "mistralai": ("langchain_mistralai", "langchain-mistralai", None, "MISTRAL_API_KEY"),
    "groq": ("langchain_groq", "langchain-groq", None, "GROQ_API_KEY"),
    "deepseek": ("langchain_deepseek", "langchain-deepseek", None, "DEEPSEEK_API_KEY"),
    "xai": ("langchain_xai", "langchain-xai", None, "XAI_API_KEY"),
    "together": ("langchain_together", "langchain-together", None, "TOGETHER_API_KEY"),
    "fireworks": ("langchain_fireworks", "langchain-fireworks", None, "FIREWORKS_API_KEY"),
}

#: Environment variables naming an OpenAI-compatible base URL, in order of precedence.
BASE_URL_ENV = ("OPENAI_BASE_URL", "OPENAI_API_BASE")
#: Sent as the key to a base URL when no key is set: local servers ignore it.
PLACEHOLDER_KEY = "tprompt-no-key"
#: Requests in flight per backend unless the run says otherwise.
DEFAULT_CONCURRENCY = 4
#: Retries of one request on a 429, a 5xx or a lost connection before the recorder sees the error.
CLIENT_RETRIES = 3
#: Longest wait between two of those retries (the server's Retry-After is honoured up to this).
MAX_RETRY_WAIT_S = 60.0
#: What the capability probe asks (one token, with log-probabilities).
PROBE_PROMPT = "Reply with the letter A."
#: Alternatives per position asked for when scoring options (OpenAI's maximum).
TOP_LOGPROBS = 20

_RETRYABLE_NAMES = (
    "RateLimit", "Timeout", "APIConnection", "Connection", "InternalServer", "ServiceUnavailable", "Overloaded",
)


def resolve_base_url(provider: str, base_url: str | Sequence[str] | None) -> str | tuple[str, ...] | None:
    """The base URL to use: the given one, else (openai only) ``OPENAI_BASE_URL``; without a trailing slash.

    Several URLs come back as a tuple (one listed alone, as that string).
    """
    if base_url is not None and not isinstance(base_url, str):
        urls = tuple(dict.fromkeys(u for u in (resolve_base_url(provider, one) for one in base_url) if u))
        return urls[0] if len(urls) == 1 else urls or resolve_base_url(provider, None)  # type: ignore[return-value]
    if not base_url and provider == "openai":
        base_url = next((os.environ[v] for v in BASE_URL_ENV if os.environ.get(v)), None)
    return base_url.strip().rstrip("/") if base_url and base_url.strip() else None


class ApiBackend(ChatBackend):
    """A chat model behind a provider API or an OpenAI-compatible server.

    Args:
        provider: a key of :data:`PROVIDERS`.
        model: the provider's model name (for a local server, what its ``/v1/models`` lists).
        spec: the spec string, ``provider:model``.
        base_url: the server's API root, e.g. ``http://127.0.0.1:8000/v1``, or several (endpoints of one model).
        concurrency: requests in flight at once on each endpoint.
        request_timeout: seconds to wait for one request (openai: per request; see the module doc).
        extra_body: server parameters merged into the body of every request (openai only: see
            :func:`tprompt.config.takes_extra_body`), e.g.
            ``{"repeat_penalty": 1.0}`` for llama.cpp's server; part of the revision, so of every cache key.

    Raises:
        MissingExtra: the provider's langchain package is not installed.
        MissingCredentials: no API key and no base URL.
        BackendError: the provider package rejects the settings.
    """

    def __init__(
        self,
        provider: str,
        model: str,
        *,
        spec: str,
        base_url: str | Sequence[str] | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        extra_body: Mapping[str, Any] | None = None,
    ) -> None:
        module, requirement, extra, key_var = PROVIDERS[provider]
        if importlib.util.find_spec(module) is None:
            install = f"pip install 'tprompt[{extra}]'" if extra else f"pip install {requirement}"
            raise MissingExtra(
                f"model {spec} needs the {requirement} package, which is not installed",
                hint=f"run `{install}`",
                spec=spec,
            )
        resolved = resolve_base_url(provider, base_url)
        urls: tuple[str, ...] = (resolved,) if isinstance(resolved, str) else resolved or ()
        kwargs: dict[str, Any] = {}
        if key_var and not os.environ.get(key_var):
            if not urls:
                raise MissingCredentials(
                    f"model {spec} needs an API key in the environment variable {key_var}",
                    hint=f"set {key_var} (it is read from the environment only and never stored), "
                    "or give --base-url for a local OpenAI-compatible server",
                    spec=spec,
                )
            kwargs["api_key"] = PLACEHOLDER_KEY
        if provider == "openai":
            kwargs["max_retries"] = 0  # retried in _invoke: a timeout must not be retried twice over
        elif provider == "anthropic":
            kwargs["max_retries"] = CLIENT_RETRIES
        from langchain.chat_models import init_chat_model

        self.spec = spec
        self.provider = provider
        self.model_name = model
        self.base_urls = urls
        self.base_url = ", ".join(urls) if urls else None  # in messages: the server(s) asked
        # The base URLs identify the servers and so the answers (the set of them: never the one that
        # answered, so several endpoints share one cache); keys never appear here.
        self.revision = f"{provider}:{model}" + (f"@{','.join(sorted(urls))}" if urls else "")
        # Server parameters change the answers: another set is another model, with a cache of its own.
        self.extra_body: dict[str, Any] = dict(extra_body or {})
        if self.extra_body:
            self.revision += f" extra_body={json.dumps(self.extra_body, sort_keys=True, separators=(',', ':'))}"
        self.price = price_for(provider, model, base_url=self.base_url)
        self._concurrency = max(1, concurrency)
        self._health = Health(max(1, len(urls)))  # shared by every run's view: it is about the servers
        self._slots = Slots(max(1, len(urls)), self._concurrency, self._health)
        self.request_timeout = float(request_timeout)
        self.abandoned: Callable[[], bool] | None = None
        self._probe = _Probe()  # shared by every run's view: the servers either return logprobs or not
        # A self-hosted OpenAI-compatible server also gets the legacy max_tokens (OpenAI's own API refuses both).
        self._legacy_max_tokens = provider == "openai" and bool(urls) and not any(
            (urlsplit(u).hostname or "").endswith("api.openai.com") for u in urls)
        try:
            self._models = [init_chat_model(model, model_provider=provider, **_with_url(kwargs, url))
                            for url in urls or (None,)]
        except Exception as exc:  # the provider package validates its own settings
            raise BackendError(f"cannot set up model {spec}: {_first_line(exc)}") from exc

    @property
    def chat_model(self):
        return self._models[0]

    @property
    def concurrency(self) -> int:
        """Requests in flight at once over every endpoint (``concurrency`` on each) and every thread of this view."""
        return self._slots.total

    def in_flight(self) -> list[int]:
        """Requests this view has in flight now, per endpoint (in the order of :attr:`base_urls`)."""
        return self._slots.in_flight()

    def for_run(
        self,
        *,
        concurrency: int | None = None,
        request_timeout: float | None = None,
        abandoned: Callable[[], bool] | None = None,
    ) -> ApiBackend:
        """A view for one run: the same clients, cache identity, probe and endpoint health; its own slots
        (``concurrency`` per endpoint), timeout and abandon check."""
        view = copy.copy(self)
        view._concurrency = max(1, int(concurrency)) if concurrency is not None else self._concurrency
        view._slots = Slots(len(self._models), view._concurrency, self._health)
        if request_timeout is not None:
            view.request_timeout = float(request_timeout)
        view.abandoned = abandoned
        return view

    # -- chat ------------------------------------------------------------------------------

    def generate(self, requests: Sequence[ChatRequest]) -> list[tuple[str, int, int]]:
        def one(req: ChatRequest) -> tuple[str, int, int]:
            messages = [{"role": r, "content": c} for r, c in req.messages]
            message = self._invoke(messages, **self._sampling(req))
            # A server may echo what it was sent (the Authorization header): the key never reaches a store.
            text = strip_keys(message.content if isinstance(message.content, str) else message.text)
            usage = getattr(message, "usage_metadata", None) or {}
            prompt = usage.get("input_tokens") or sum(self.count_tokens(c) for _, c in req.messages)
            completion = usage.get("output_tokens") or self.count_tokens(text)
            return text, int(prompt), int(completion)

        return self._map(one, requests)

    def _sampling(self, req: ChatRequest) -> dict[str, Any]:
        # Sampling parameters travel per call so one model object serves all.
        kwargs: dict[str, Any] = {"temperature": req.temperature, "max_tokens": req.max_tokens}
        if req.top_p < 1.0:
            kwargs["top_p"] = req.top_p
        if req.stop:
            kwargs["stop"] = list(req.stop)
        if req.seed is not None and self.provider == "openai":
            # Samples of one request differ by seed; a server that honours seeds gives each the same answer again.
            kwargs["seed"] = req.seed + req.sample_index
        return kwargs

    # -- option probabilities -----------------------------------------------------------------

    @property
    def probes_logprobs(self) -> bool:  # type: ignore[override]
        """Whether :attr:`supports_option_probs` asks the server (OpenAI-compatible ones: ``openai``)."""
        return self.provider == "openai"

    def assume_logprobs(self, value: bool) -> None:
        """Take ``value`` as the probe's answer (a run's record of it: ``resume`` does not ask again)."""
        with self._probe.lock:
            if self._probe.logprobs is None:
                self._probe.logprobs = bool(value)

    @property
    def supports_option_probs(self) -> bool:  # type: ignore[override]
        """Whether the server returns token log-probabilities (probed once with a one-token request,
        retried like any model call: :func:`._retry.with_retries`).

        Raises:
            TransientBackendError: the server cannot be reached to find out.
        """
        if self.provider != "openai":
            return False
        with self._probe.lock:
            if self._probe.logprobs is None:
                self._probe.logprobs = with_retries(self._ask_logprobs, abandoned=self.abandoned)
            return self._probe.logprobs

    def _ask_logprobs(self) -> bool:
        message = self._invoke([{"role": "user", "content": PROBE_PROMPT}],
                               temperature=0.0, max_tokens=1, logprobs=True, top_logprobs=2)
        return _top_logprobs(message) is not None

    def option_probs(self, requests: Sequence[OptionsRequest]) -> list[tuple[tuple[float, ...], int]]:
        if not self.supports_option_probs:
            servers = "servers" if len(self.base_urls) > 1 else "server"
            where = f"the {servers} at {self.base_url}" if self.base_url else f"provider {self.provider}"
            raise BackendError(
                f"model {self.spec}: {where} returns no token log-probabilities, so answer options cannot be scored",
                hint="use --mode generate (or auto, which falls back to it)",
                spec=self.spec,
            )

        def one(req: OptionsRequest) -> tuple[tuple[float, ...], int]:
            messages = [{"role": r, "content": c} for r, c in req.messages]
            message = self._invoke(messages, temperature=0.0, max_tokens=1, logprobs=True, top_logprobs=TOP_LOGPROBS)
            top = _top_logprobs(message)
            if top is None:
                raise BackendError(f"model {self.spec}: the answer carries no log-probabilities", spec=self.spec)
            usage = getattr(message, "usage_metadata", None) or {}
            prompt = usage.get("input_tokens") or sum(self.count_tokens(c) for _, c in req.messages)
            return option_distribution(top, req.options), int(prompt)

        return self._map(one, requests)

    # -- shared machinery -----------------------------------------------------------------------

    def _invoke(self, messages: list[dict[str, str]], **kwargs: Any) -> Any:
        """One request, on a free endpoint of this view; 429/5xx/connection errors retried, a timeout raised at once.

        With several endpoints, a retryable failure on one (a timeout too) marks it down and sends the
        request to another at once; once it has failed on every endpoint that is up, the rules of one
        endpoint apply.
        """
        if self.provider == "openai":
            kwargs["timeout"] = self.request_timeout  # per request: views of one client differ
            if self.extra_body:
                kwargs["extra_body"] = {**self.extra_body, **kwargs.get("extra_body", {})}
            if "max_tokens" in kwargs and self._legacy_max_tokens:
                # langchain-openai sends the limit as max_completion_tokens, which llama.cpp's Python server
                # drops (a 1-token request then writes a whole reply); such servers read the legacy name.
                kwargs["extra_body"] = {**kwargs.get("extra_body", {}), "max_tokens": kwargs["max_tokens"]}
        attempt = 0
        tried: set[int] = set()
        while True:
            with self._slots.slot(avoid=tried) as index:
                try:
                    answer = self._models[index].invoke(messages, **kwargs)
                except Exception as exc:
                    error, cause = self._error(exc, index), exc
                else:
                    self._health.mark_up(index)
                    return answer
            abandoned = bool(self.abandoned and self.abandoned())
            if len(self._models) > 1 and error.is_retryable and not abandoned:
                self._health.mark_down(index, getattr(error, "retry_after", None))
                tried.add(index)
                up = self._health.up()
                if any(up[i] and i not in tried for i in range(len(up))):
                    continue  # failover: another endpoint, at once (not one of the retries below)
            retry = (self.provider == "openai" and error.is_retryable and not getattr(error, "timed_out", False)
                     and attempt < CLIENT_RETRIES and not abandoned)
            if not retry:
                raise error from cause
            wait = getattr(error, "retry_after", None)
            time.sleep(min(MAX_RETRY_WAIT_S, wait if wait is not None else 0.5 * 2**attempt))
            attempt += 1
            tried.clear()

    def _error(self, exc: BaseException, index: int = 0) -> BackendError:
        """A provider exception as a tprompt error, in words that name the server (endpoint ``index``)."""
        url = self.base_urls[index] if self.base_urls else None
        where = f"the server at {url}" if url else f"provider {self.provider}"
        name = type(exc).__name__
        if not isinstance(exc, BackendError) and ("Timeout" in name or isinstance(exc, TimeoutError)):
            return TransientBackendError(
                f"model {self.spec}: {where} did not answer within {self.request_timeout:g} s",
                hint="a slow server needs a longer --request-timeout (request_timeout in a config)",
                spec=self.spec, timed_out=True,
            )
        missing = _missing_part(exc)
        if missing is not None:
            return BackendError(
                f"model {self.spec}: {where} answered without {missing}",
                hint="check that it serves an OpenAI-compatible /chat/completions for this model",
                spec=self.spec,
            )
        return classify(exc, self.spec)

    def _map(self, one: Callable[[Any], Any], requests: Sequence[Any]) -> list[Any]:
        """``one`` over ``requests`` in order, up to :attr:`concurrency` at once; the first error is raised."""
        if len(requests) <= 1:
            return [one(r) for r in requests]
        with ThreadPoolExecutor(max_workers=min(len(requests), self.concurrency)) as pool:
            futures = [pool.submit(one, r) for r in requests]
            return [f.result() for f in futures]


def _with_url(kwargs: dict[str, Any], url: str | None) -> dict[str, Any]:
    """A client's settings, with its endpoint's base URL when it has one."""
    return {**kwargs, "base_url": url} if url else dict(kwargs)


class _Probe:
    """Whether the server returns log-probabilities, found out once and shared by every view."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.logprobs: bool | None = None


def _missing_part(exc: BaseException) -> str | None:
    """What a malformed chat completion lacked, when ``exc`` is langchain failing on one; else None."""
    text = str(exc)
    if isinstance(exc, IndexError):  # an empty `choices` list leaves langchain no generation to return
        return "any choice (its `choices` list is empty)"
    if isinstance(exc, KeyError) and "choices" in text:
        return "a `choices` field"
    if isinstance(exc, TypeError) and "choices" in text:
        return "choices (`choices` is null)"
    return None


def _top_logprobs(message: Any) -> list[tuple[str, float]] | None:
    """``(token, logprob)`` alternatives of the first generated token, or None without logprobs."""
    logprobs = (getattr(message, "response_metadata", None) or {}).get("logprobs") or {}
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not content:
        return None
    first = content[0]
    top = first.get("top_logprobs") or [{"token": first.get("token"), "logprob": first.get("logprob")}]
    return [(str(t.get("token") or ""), float(t["logprob"])) for t in top if t.get("logprob") is not None]


def option_distribution(top: Sequence[tuple[str, float]], options: Sequence[str]) -> tuple[float, ...]:
    """Probabilities of ``options`` from the first token's top alternatives, renormalized over the options.

    A token counts for an option when, stripped of spaces and of a trailing
    ``.`` or ``)``, it equals the option (``" B"``, ``"B."``). An option not
    among the alternatives gets at most the smallest listed probability (its
    true value is below that), shared with the other missing ones out of the
    mass the list leaves over. Uniform when no option is listed and nothing is left.
    """
    mass = dict.fromkeys(options, 0.0)
    for token, logprob in top:
        key = token.strip().rstrip(".)").strip()
        if key in mass:
            mass[key] += math.exp(logprob)
    missing = [o for o in options if mass[o] == 0.0]
    if missing and top:
        listed = sum(math.exp(lp) for _, lp in top)
        floor = min(math.exp(min(lp for _, lp in top)), max(0.0, 1.0 - listed) / len(missing))
        for o in missing:
            mass[o] = floor
    total = sum(mass.values())
    if total <= 0.0:
        return tuple(1.0 / len(options) for _ in options)
    return tuple(mass[o] / total for o in options)


def classify(exc: BaseException, spec: str) -> BackendError:
    """A provider exception as a tprompt error: retryable or not (with ``retry_after``), its message without secrets."""
    if isinstance(exc, BackendError):
        return exc
    name = type(exc).__name__
    response = getattr(exc, "response", None)
    status = getattr(exc, "status_code", None) or getattr(response, "status_code", None)
    retryable = any(part in name for part in _RETRYABLE_NAMES) or isinstance(exc, (TimeoutError, ConnectionError))
    if isinstance(status, int) and (status == 429 or status >= 500):
        retryable = True
    if retryable:
        return TransientBackendError(
            f"model {spec}: {name}: {_first_line(exc)}", spec=spec, status=status,
            retry_after=_retry_after(response),
        )
    return BackendError(f"model {spec}: {name}: {_first_line(exc)}", spec=spec, status=status)


def _retry_after(response: Any) -> float | None:
    """Seconds the server asked us to wait (``Retry-After`` or ``retry-after-ms``), if it said."""
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    try:
        if headers.get("retry-after-ms"):
            return float(headers["retry-after-ms"]) / 1000
        if headers.get("retry-after"):
            return float(headers["retry-after"])
    except (TypeError, ValueError):
        return _retry_after_date(headers.get("retry-after"))
    return None


def _retry_after_date(value: Any) -> float | None:
    """Seconds until a ``Retry-After`` HTTP date, or None when it is not one."""
    try:
        when = email.utils.parsedate_to_datetime(str(value))
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return _redact(text[0] if text else type(exc).__name__)[:300]


def strip_keys(text: str) -> str:
    """``text`` with every API key tprompt may send (the value of each provider's key variable) masked as ``***``.

    Only the exact values: a model's reply keeps everything else as it was.
    """
    for _, _, _, var in PROVIDERS.values():
        value = os.environ.get(var) if var else None
        if value and len(value) >= 6:
            text = text.replace(value, "***")
    return text


def _redact(text: str) -> str:
    # Provider messages sometimes echo a key ("Incorrect API key provided: sk-..."): mask the keys tprompt
    # sends, and anything shaped like one, before the text goes anywhere.
    text = strip_keys(text)
    return re.sub(r"\b(sk|pk|key|api)[-_][A-Za-z0-9_\-]{8,}", "***", text)
