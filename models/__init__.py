"""Model backends (embedded SmolLM2, transformers, langchain providers, fake), pricing and the recorder.

What answers a request, not what an agent asks: the agents (proposer,
transfer) are in ``tprompt.agents``, the scorer and the evaluator in
``tprompt.evaluator``, and the graph's nodes that run them in ``tprompt.graph``.

Names load on first use (PEP 562), so importing this package costs nothing until
a model or the recorder is needed.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_WHERE = {
    "DEFAULT_MODEL": ".backend",
    "ChatBackend": ".backend",
    "get_model": ".backend",
    "BackendChatModel": ".chat_model",
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

__all__ = tuple(sorted(_WHERE))
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
