"""API models through langchain's ``init_chat_model`` (openai, anthropic, ollama, ...).

The provider package is an optional extra, checked before anything is built;
the API key is read by the provider package from the environment and never
passed through, stored or logged by tprompt. Provider errors are sorted into
retryable (rate limits, timeouts, 5xx) and not; the recorder retries the first.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Sequence
from typing import Any

from ..errors import BackendError, MissingCredentials, MissingExtra, TransientBackendError
from .backend import ChatBackend
from .types import ChatRequest

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

_RETRYABLE_NAMES = (
    "RateLimit", "Timeout", "APIConnection", "Connection", "InternalServer", "ServiceUnavailable", "Overloaded",
)


class ApiBackend(ChatBackend):
    """A chat model behind a provider API; requests with equal parameters go out together with ``batch``."""

    supports_option_probs = False

    def __init__(self, provider: str, model: str, *, spec: str) -> None:
        module, requirement, extra, key_var = PROVIDERS[provider]
        if importlib.util.find_spec(module) is None:
            install = f"pip install 'tprompt[{extra}]'" if extra else f"pip install {requirement}"
            raise MissingExtra(
                f"model {spec} needs the {requirement} package, which is not installed",
                hint=f"run `{install}`",
                spec=spec,
            )
        if key_var and not os.environ.get(key_var):
            raise MissingCredentials(
                f"model {spec} needs an API key in the environment variable {key_var}",
                hint=f"set {key_var} (it is read from the environment only and never stored)",
                spec=spec,
            )
        from langchain.chat_models import init_chat_model

        self.spec = spec
        self.provider = provider
        self.revision = f"{provider}:{model}"
        try:
            self._model = init_chat_model(model, model_provider=provider)
        except Exception as exc:  # the provider package validates its own settings
            raise BackendError(f"cannot set up model {spec}: {_first_line(exc)}") from exc

    @property
    def chat_model(self):
        return self._model

    def generate(self, requests: Sequence[ChatRequest]) -> list[tuple[str, int, int]]:
        inputs = [[{"role": r, "content": c} for r, c in req.messages] for req in requests]
        configs: list[dict[str, Any]] = []
        results: list[tuple[str, int, int]] = []
        try:
            # Sampling parameters travel per call so one model object serves all.
            for req, messages in zip(requests, inputs):
                kwargs: dict[str, Any] = {"temperature": req.temperature, "max_tokens": req.max_tokens}
                if req.top_p < 1.0:
                    kwargs["top_p"] = req.top_p
                if req.stop:
                    kwargs["stop"] = list(req.stop)
                if req.seed is not None and self.provider == "openai":
                    kwargs["seed"] = req.seed
                configs.append(kwargs)
            if all(c == configs[0] for c in configs):
                outputs = self._model.batch(inputs, **configs[0]) if inputs else []
            else:
                outputs = [self._model.invoke(messages, **kwargs) for messages, kwargs in zip(inputs, configs)]
        except Exception as exc:
            raise classify(exc, self.spec) from exc
        for req, message in zip(requests, outputs):
            text = message.content if isinstance(message.content, str) else message.text
            usage = getattr(message, "usage_metadata", None) or {}
            prompt = usage.get("input_tokens") or sum(self.count_tokens(c) for _, c in req.messages)
            completion = usage.get("output_tokens") or self.count_tokens(text)
            results.append((text, int(prompt), int(completion)))
        return results


def classify(exc: BaseException, spec: str) -> BackendError:
    """A provider exception as a tprompt error: retryable or not, its message without secrets."""
    if isinstance(exc, BackendError):
        return exc
    name = type(exc).__name__
    status = getattr(exc, "status_code", None) or getattr(getattr(exc, "response", None), "status_code", None)
    retryable = any(part in name for part in _RETRYABLE_NAMES) or isinstance(exc, (TimeoutError, ConnectionError))
    if isinstance(status, int) and (status == 429 or status >= 500):
        retryable = True
    cls = TransientBackendError if retryable else BackendError
    return cls(f"model {spec}: {name}: {_first_line(exc)}", spec=spec)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return _redact(text[0] if text else type(exc).__name__)[:300]


def _redact(text: str) -> str:
    # Provider messages sometimes echo a key ("Incorrect API key provided: sk-..."):
    # mask every value of a known key variable before the text goes anywhere.
    for _, _, _, var in PROVIDERS.values():
        value = os.environ.get(var) if var else None
        if value and len(value) >= 6:
            text = text.replace(value, "***")
    return re.sub(r"\b(sk|pk|key|api)[-_][A-Za-z0-9_\-]{8,}", "***", text)
