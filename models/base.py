"""The interface every model backend implements: :class:`ChatBackend`.

Its own module so that the backends (``fake``, ``hf``, ``api``) and
:mod:`.backend`, which picks one of them for a spec, each import it without
importing one another.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..errors import BackendError
from .types import ChatRequest, OptionsRequest

if TYPE_CHECKING:  # langchain loads only when a langchain face is asked for
    from langchain_core.language_models import BaseChatModel


class ChatBackend(abc.ABC):
    """One model, loaded once per process. Subclasses implement :meth:`generate`.

    Attributes:
        spec: the spec string it was made from, e.g. ``"smollm2"``.
        revision: identifies the weights or API version; part of the cache key.
        supports_option_probs: whether :meth:`option_probs` works.
        scores_whole_options: whether :meth:`option_probs` scores each option's every token (a multi-token
            label such as ``technical support`` too), not its first token only; ``auto`` mode scores
            answer-space (label) tasks by option probabilities only on such a backend.
        price: ``(input, output)`` USD per million tokens, or None (free or unknown).
        batched: answers a batch in one pass (a local forward pass), so the recorder sends
            misses together; otherwise it sends one request per call and records each answer
            as it arrives.
        probes_logprobs: whether :attr:`supports_option_probs` is found out by asking a server (a
            probe), so a run records the answer (``server_logprobs``) and tells it again
            (:meth:`assume_logprobs`) instead of asking twice.
    """

    spec: str = ""
    revision: str = ""
    supports_option_probs: bool = False
    scores_whole_options: bool = False
    price: tuple[float, float] | None = None
    batched: bool = False
    probes_logprobs: bool = False

    def assume_logprobs(self, value: bool) -> None:
        """Take ``value`` as the answer of the probe :attr:`probes_logprobs` says is needed (a run's record of it)."""
        del value  # a backend that never probes has nothing to be told

    @abc.abstractmethod
    def generate(self, requests: Sequence[ChatRequest]) -> list[tuple[str, int, int]]:
        """Answer every request: ``(text, prompt_tokens, completion_tokens)`` in order."""

    def option_probs(self, requests: Sequence[OptionsRequest]) -> list[tuple[tuple[float, ...], int]]:
        """``(probs, prompt_tokens)`` per request; probs sum to 1 over the options.

        Raises:
            BackendError: this backend cannot score options (API models).
        """
        raise BackendError(
            f"model {self.spec} cannot score answer options",
            hint="use a transformers model (smollm2, hf:...) or the fake model for option probabilities",
        )

    def count_tokens(self, text: str) -> int:
        """Token count of ``text`` when the backend reports none (a word count by default)."""
        return len(text.split())

    def for_run(
        self,
        *,
        concurrency: int | None = None,
        request_timeout: float | None = None,
        abandoned: Callable[[], bool] | None = None,
    ) -> ChatBackend:
        """This backend as one run uses it: its own requests in flight, request timeout and abandon check.

        The shared backend is not changed. A local backend has none of these
        settings (it answers in this process, batch by batch) and returns itself.

        Args:
            concurrency: requests in flight at once for this run.
            request_timeout: seconds to wait for one request before it counts as timed out.
            abandoned: True once the run no longer wants answers (it is pausing):
                the recorder then stops waiting for the requests in flight.
        """
        return self

    @property
    def chat_model(self) -> BaseChatModel:
        """The langchain chat model behind this backend."""
        model = self.__dict__.get("_chat_model")
        if model is None:
            from .chat_model import BackendChatModel

            model = BackendChatModel(backend=self)
            self.__dict__["_chat_model"] = model
        return model

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec}>"


__all__ = ("ChatBackend",)
