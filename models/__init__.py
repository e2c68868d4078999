"""Model backends (embedded SmolLM2, transformers, langchain providers, fake), pricing and the recorder.

What answers a request, not what an agent asks: the agents (proposer,
transfer) are in ``tprompt.agents``, the scorer and the evaluator in
``tprompt.evaluator``, and the graph's nodes that run them in ``tprompt.graph``.

Names load on first use (PEP 562), so importing this package costs nothing until
a model or the recorder is needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_WHERE = {
    "DEFAULT_MODEL": ".backend",
    "ChatBackend": ".base",
    "get_model": ".backend",
    "BackendChatModel": ".chat_model",
    "CallSite": ".recorder",
    "CallsAbandoned": ".recorder",
    "DEFAULT_REQUEST_TIMEOUT": ".backend",
    "Recorder": ".recorder",
    "cache_key": ".recorder",
    "chat_request_body": ".recorder",
    "options_request_body": ".recorder",
    "ChatRequest": ".types",
    "ChatResult": ".types",
    "Message": ".types",
    "OptionsRequest": ".types",
    "OptionsResult": ".types",
}

if TYPE_CHECKING:  # what a type checker sees; at run time each name loads on first use
    from .backend import DEFAULT_MODEL, DEFAULT_REQUEST_TIMEOUT, get_model
    from .base import ChatBackend
    from .chat_model import BackendChatModel
    from .recorder import (
        CallsAbandoned,
        CallSite,
        Recorder,
        cache_key,
        chat_request_body,
        options_request_body,
    )
    from .types import ChatRequest, ChatResult, Message, OptionsRequest, OptionsResult

__all__ = (
    "BackendChatModel",
    "CallSite",
    "CallsAbandoned",
    "ChatBackend",
    "ChatRequest",
    "ChatResult",
    "DEFAULT_MODEL",
    "DEFAULT_REQUEST_TIMEOUT",
    "Message",
    "OptionsRequest",
    "OptionsResult",
    "Recorder",
    "cache_key",
    "chat_request_body",
    "get_model",
    "options_request_body",
)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
