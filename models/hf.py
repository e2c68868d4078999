"""The transformers backend: the embedded SmolLM2 and any ``hf:`` causal LM, answered by the local engine.

The engine (:mod:`.local`) does the work; this module is the
:class:`~.base.ChatBackend` face over it, and calls only the engine's public
interface (:class:`~.local.LocalEngine`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from .base import ChatBackend
from .local.precision import Precision
from .local.revision import dir_revision
from .types import ChatRequest, OptionsRequest


class TransformersBackend(ChatBackend):
    """A transformers causal LM on the CPU, at fp32, bf16 or int8 (:mod:`.local.precision`).

    Attributes:
        engine: the :class:`~.local.LocalEngine` that answers (the benchmarks read its
            ``stats``, ``model`` and ``tokenizer``).
    """

    supports_option_probs = True
    scores_whole_options = True  # the product of an option's tokens' probabilities (LocalEngine.option_probs)
    batched = True  # one forward pass answers a batch

    def __init__(
        self, source: str | os.PathLike[str], *, spec: str, revision: str | None = None, precision: Precision = "fp32",
    ) -> None:
        from .local import LocalEngine

        self.spec = spec
        self.engine = LocalEngine(source, revision=revision, precision=precision)
        self.revision = self.engine.revision
        self.precision = self.engine.precision

    def generate(self, requests: Sequence[ChatRequest]) -> list[tuple[str, int, int]]:
        """Decode every request in batches; returns (text, prompt_tokens, completion_tokens)."""
        return self.engine.generate(requests)

    def option_probs(self, requests: Sequence[OptionsRequest]) -> list[tuple[tuple[float, ...], int]]:
        """Probability of each option after the prompt and answer prefix (see :meth:`.local.LocalEngine.option_probs`)."""
        return self.engine.option_probs(requests)

    def count_tokens(self, text: str) -> int:
        return self.engine.count_tokens(text)


__all__ = ("TransformersBackend", "dir_revision")
