"""The langchain face of a tprompt backend: a ``BaseChatModel`` answering through it.

Kept apart from :mod:`.backend` so that commands that never call a model do not
import langchain.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration
from langchain_core.outputs import ChatResult as LCChatResult
from pydantic import PrivateAttr

from ..errors import BackendError
from .types import ChatRequest, Message


def to_messages(messages: Sequence[BaseMessage]) -> tuple[Message, ...]:
    """langchain messages -> our ``(role, content)`` tuples."""
    roles = {"system": "system", "human": "user", "ai": "assistant", "user": "user", "assistant": "assistant"}
    result = []
    for message in messages:
        role = roles.get(message.type)
        if role is None:
            raise BackendError(f"message type {message.type!r} is not supported by tprompt backends")
        content = message.content if isinstance(message.content, str) else message.text
        result.append((role, content))
    return tuple(result)


def chat_result(text: str, prompt_tokens: int, completion_tokens: int) -> LCChatResult:
    """One answer as langchain's chat result, with its token usage."""
    message = AIMessage(
        content=text,
        usage_metadata={
            "input_tokens": prompt_tokens,
            "output_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    )
    return LCChatResult(generations=[ChatGeneration(message=message)])


class BackendChatModel(BaseChatModel):
    """A langchain chat model that answers through a tprompt :class:`ChatBackend`."""

    backend: Any
    temperature: float = 0.0
    max_tokens: int = 256
    top_p: float = 1.0
    seed: int | None = None

    @property
    def _llm_type(self) -> str:
        return f"tprompt-{self.backend.spec}"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"spec": self.backend.spec, "revision": self.backend.revision}

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> LCChatResult:
        return self._reply(to_messages(messages), tuple(stop or ()), float(kwargs.get("temperature", self.temperature)),
                           int(kwargs.get("max_tokens", self.max_tokens)), kwargs)

    def _reply(self, sent: tuple[Message, ...], stop: tuple[str, ...], temperature: float, max_tokens: int,
               kwargs: dict[str, Any]) -> LCChatResult:
        request = ChatRequest(messages=sent, temperature=temperature, max_tokens=max_tokens, stop=stop,
                              top_p=float(kwargs.get("top_p", self.top_p)), seed=kwargs.get("seed", self.seed),
                              sample_index=int(kwargs.get("sample_index", 0)))
        return chat_result(*self.backend.generate([request])[0])


class RecordedChatModel(BackendChatModel):
    """The ``llm`` a user's program is given: a langchain chat model whose every call goes through a call site.

    Each call is one :class:`ChatRequest` through ``site`` (the run's recorder: cache, transcript row, cost),
    naming the prompts whose text it carries (``prompt_refs(messages)``: ``program.NAME@<sha12>``, in the cache
    key and the transcript). Identical requests within one example get sample indices 0, 1, ... so a program that
    samples twice gets two answers, and the same two again from the cache (parallel ones: in the order they
    start, so which branch gets which may differ between runs). ``call_ids`` collects the
    calls made, in order.
    """

    site: Any
    #: the refs of the named prompts a request's messages carry (``evaluator.program.prompts_in``, bound)
    prompt_refs: Any = None
    temperature: float = 0.0
    max_tokens: int = 256
    call_ids: list[str] = []
    seen: dict[str, int] = {}
    _lock: Any = PrivateAttr(default_factory=threading.Lock)

    def _reply(self, sent: tuple[Message, ...], stop: tuple[str, ...], temperature: float, max_tokens: int,
               kwargs: dict[str, Any]) -> LCChatResult:
        # a program's call: top_p and seed stay ChatRequest's defaults (answer counts the sample index)
        result = self.answer(sent, stop, temperature=temperature, max_tokens=max_tokens)
        return chat_result(result.text, result.prompt_tokens, result.completion_tokens)

    def answer(self, sent: tuple[Message, ...], stop: tuple[str, ...], *, temperature: float, max_tokens: int) -> Any:
        """One call through the site (its :class:`~tprompt.models.types.ChatResult`): what ``invoke`` sends, also
        for a program in a worker process (whose ``llm`` forwards each call's messages and parameters here)."""
        request = ChatRequest(
            messages=sent,
            temperature=temperature,
            max_tokens=max_tokens,
            stop=stop,
            templates=tuple(self.prompt_refs(sent)) if self.prompt_refs is not None else (),
        )
        key = repr(request)
        with self._lock:  # the program's own parallel calls (llm.batch, parallel graph branches)
            index = self.seen.get(key, 0)
            self.seen[key] = index + 1
        if index:
            request = replace(request, sample_index=index)
        result = self.site.chat(self.backend, [request])[0]
        self.call_ids.append(result.call_id)
        return result


__all__ = ("BackendChatModel", "RecordedChatModel", "to_messages")
