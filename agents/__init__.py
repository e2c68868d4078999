"""Model backends (embedded SmolLM2, transformers, langchain providers, fake) and the recorder."""

from .backend import DEFAULT_MODEL, BackendChatModel, ChatBackend, get_model
from .recorder import Recorder, cache_key, chat_request_body, options_request_body
from .types import ChatRequest, ChatResult, Message, OptionsRequest, OptionsResult

__all__ = (
    "DEFAULT_MODEL",
    "BackendChatModel",
    "ChatBackend",
    "ChatRequest",
    "ChatResult",
    "Message",
    "OptionsRequest",
    "OptionsResult",
    "Recorder",
    "cache_key",
    "chat_request_body",
    "get_model",
    "options_request_body",
)
