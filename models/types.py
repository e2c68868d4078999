"""The requests and results every model backend and the recorder speak."""

from __future__ import annotations

from dataclasses import dataclass

#: ``(role, content)`` with role in {"system", "user", "assistant"}.
Message = tuple[str, str]

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One chat completion: messages plus every sampling parameter.

    ``sample_index`` tells apart the n samples of the same request: at
    temperature > 0 each gets its own answer, and a re-run gets the same n back.
    """

    messages: tuple[Message, ...]
    temperature: float = 0.0
    max_tokens: int = 256
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    sample_index: int = 0
    #: the declared prompt templates (``name@vN``) the messages were rendered from; recorded and in the cache key
    templates: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ChatResult:
    """The answer to one :class:`ChatRequest` and how it was obtained."""

    text: str
    call_id: str
    cache_hit: bool
    prompt_tokens: int
    completion_tokens: int
    latency_s: float


@dataclass(frozen=True, slots=True)
class OptionsRequest:
    """Probability of each answer option as the continuation of the conversation.

    The model sees ``messages`` with the chat template and generation prompt
    applied, then ``answer_prefix`` (e.g. "Answer: ") as the start of the
    assistant turn, then each option string (e.g. "A", "B", ...). Requests that
    share a prompt (same system message) share a token prefix; the backend
    computes that prefix's KV cache once and reuses it.
    """

    messages: tuple[Message, ...]
    options: tuple[str, ...]
    answer_prefix: str = "Answer: "
    #: the declared prompt templates (``name@vN``) the messages were rendered from; recorded and in the cache key
    templates: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OptionsResult:
    """Option probabilities (renormalized over the options, summing to 1)."""

    probs: tuple[float, ...]
    call_id: str
    cache_hit: bool
    prompt_tokens: int
    latency_s: float


def check_messages(messages: tuple[Message, ...]) -> None:
    """Raise ValueError unless ``messages`` is a non-empty tuple of (role, text) pairs."""
    if not messages:
        raise ValueError("a model request needs at least one message")
    for message in messages:
        if len(message) != 2 or message[0] not in ROLES or not isinstance(message[1], str):
            raise ValueError(f"bad message {message!r}: expected (role, text) with role in {ROLES}")
