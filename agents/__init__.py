"""Model backends (embedded SmolLM2, transformers, langchain providers, fake) and the recorder.

Names load on first use (PEP 562), so importing this package costs nothing until
a model or the recorder is needed.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "DEFAULT_MODEL": ".backend",
    "ChatBackend": ".backend",
    "get_model": ".backend",
    "BackendChatModel": ".chat_model",
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

__all__ = tuple(sorted(_WHERE))


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
