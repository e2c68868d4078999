"""The local inference engine: transformers causal LMs run in this process, built for a small CPU.

The transformers backend (:mod:`tprompt.models.hf`) calls :class:`LocalEngine`
(``option_probs``, ``generate``, ``count_tokens``, ``revision``) and nothing
else of this package. Its modules: :mod:`.engine` (loading, option scoring,
the shared-prefix cache), :mod:`.packing` (rows packed without padding),
:mod:`.llama` (the fused Llama pass), :mod:`.decode` (batched decoding),
:mod:`.precision` (fp32 / bf16 / int8 weights) and :mod:`.threads` (the CPU
thread policy).

Importing this package imports neither torch nor transformers: the engine
loads them when it is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .engine import ForwardStats, LocalEngine


def __getattr__(name: str):
    if name in ("LocalEngine", "ForwardStats"):
        from . import engine

        return getattr(engine, name)
    raise AttributeError(name)


__all__ = ("ForwardStats", "LocalEngine")
