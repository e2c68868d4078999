"""The local inference engine: a transformers causal LM run in this process (the embedded SmolLM2, any ``hf:`` model).

:class:`LocalEngine` is the interface the transformers backend
(:mod:`tprompt.models.hf`) calls: :meth:`~LocalEngine.option_probs`,
:meth:`~LocalEngine.generate`, :meth:`~LocalEngine.count_tokens`, and the
``revision``, ``precision`` and ``stats`` it reports. Two primitives, both
built for a small CPU:

* :meth:`LocalEngine.option_probs` scores answer options from one
  forward pass per pack of rows. Requests with the same system prompt share a
  token prefix whose KV cache is computed once; the tokens after it are packed
  into ~512-token sequences without padding, each row attending to the prefix
  and itself only (:func:`_packed_attention`). Only each row's last positions
  are scored, and single-token options on their own logits, without the
  vocabulary projection.
* :meth:`LocalEngine.generate` decodes a batch together (left padding,
  the same prefix sharing for the prefill), greedy at temperature 0, sampled
  otherwise with a generator per request seeded from ``seed`` and
  ``sample_index`` so answers are reproducible.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...errors import BackendError, ModelUnavailable
from ..row_progress import rows_done
from ..types import ChatRequest, Message, OptionsRequest
from .decode import DECODE_BATCH, DECODE_PREFILL_TOKENS, decode
from .llama import FUSED_PACK_TOKENS, _FusedLlama
from .packing import (
    _PLAIN_LLAMA_LIKE,
    MIN_SHARED_PREFIX,
    PACK_TOKENS,
    PACKED_ATTENTION,
    _batches,
    _by_group,
    _common_prefix_len,
    _group_key,
    _packed_rows,
    _packs,
    _register_packed_attention,
    _Row,
)
from .precision import Precision, bf16_stock, fp16_stock, quantize_stock, revision_with
from .revision import revision_of
from .threads import _threads_for, set_torch_threads


@dataclass
class ForwardStats:
    """What the forward passes of this engine cost; the benchmark reads it."""

    forward_calls: int = 0
    tokens: int = 0  # real tokens run through the model (shared prefixes once)
    padded_tokens: int = 0  # tokens including padding
    context_tokens: int = 0  # sum over tokens of their attention context (for FLOP counts)
    logit_rows: int = 0  # positions projected onto the whole vocabulary
    option_logits: int = 0  # single logits computed for an option token only (no vocabulary projection)
    threads: dict[int, int] = field(default_factory=dict)  # torch threads -> forward passes run with them

    def reset(self) -> None:
        self.forward_calls = self.tokens = self.padded_tokens = self.context_tokens = self.logit_rows = 0
        self.option_logits = 0
        self.threads = {}

    def count_pass(self, threads: int, tokens: int, padded: int | None = None, context: int = 0) -> None:
        """One more forward pass, run on ``threads`` torch threads over ``tokens`` real tokens (``padded`` with the
        padding; the same by default) whose attention contexts add up to ``context``."""
        self.forward_calls += 1
        self.threads[threads] = self.threads.get(threads, 0) + 1
        self.tokens += tokens
        self.padded_tokens += tokens if padded is None else padded
        self.context_tokens += context


def _stock_pass(module: Any, input_ids: Any, mask: Any, position_ids: Any, cache: Any, **kwargs: Any) -> Any:
    """One pass of a stock transformers module (the model, or its base model) that extends ``cache``."""
    return module(input_ids=input_ids, attention_mask=mask, position_ids=position_ids, cache=cache, use_cache=True,
                  **kwargs)


class LocalEngine:
    """A transformers causal LM on the CPU, at fp32, bf16, fp16 or int8 (:mod:`.precision`).

    Attributes:
        revision: the weights' revision marked with the precision (part of the cache key).
        precision: what the decoder's linear layers multiply in.
        stats: what the forward passes cost (the benchmarks read it).
        model, tokenizer: the transformers objects (the benchmarks compare against them).
    """

    def __init__(self, source: str | os.PathLike[str], *, revision: str | None = None, precision: Precision = "fp32") -> None:
        set_torch_threads()
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        self.torch = torch
        hf_logging.disable_progress_bar()  # loading is quick once converted; no bar of transformers' own
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(source))
            self.model = AutoModelForCausalLM.from_pretrained(str(source), dtype=torch.float32)
        except (OSError, ValueError) as exc:
            raise ModelUnavailable(
                f"cannot load the transformers model {source} ({str(exc).splitlines()[0]})",
                hint="give a local directory with config.json and weights, or a hub id reachable from here",
            ) from exc
        finally:
            hf_logging.enable_progress_bar()
        self.model.eval()
        self.precision = precision
        self.revision = revision or revision_with(revision_of(source, self.model), precision)
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.tokenizer.eos_token_id or 0
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        self.stats = ForwardStats()
        self._lock = threading.RLock()
        config = self.model.config
        head = self.model.get_output_embeddings()
        llama_like = getattr(config, "model_type", None) in _PLAIN_LLAMA_LIKE
        # Score single-token options on their own logits (hidden state . token
        # embedding) instead of projecting onto the whole vocabulary: the
        # softmax over the options is the same, and the projection reads the
        # 113 MB embedding matrix at every pass for a few rows.
        self._option_head = head.weight if llama_like and isinstance(head, torch.nn.Linear) else None
        self._option_bias = head.bias if self._option_head is not None else None
        self._packed = False
        if llama_like and getattr(config, "_attn_implementation", None) == "sdpa":
            _register_packed_attention()
            self.model.set_attn_implementation(PACKED_ATTENTION)
            self._packed = True
        self.fused = _FusedLlama.build(self.model, precision) if self._packed and self._option_head is not None else None
        if precision == "int8":
            quantize_stock(self.model)  # after the fused pass took its own int8 copy of the fp32 weights
        elif precision == "bf16":
            bf16_stock(self.model)  # the fused pass's bf16 matrices, shared (the fp32 weights are freed)
        elif precision == "fp16":
            fp16_stock(self.model)  # rounded to fp16 values, as the fused pass's (views of them: no copy)

    # -- text <-> tokens -----------------------------------------------------------

    def render(self, messages: Sequence[Message]) -> str:
        """The prompt text the model sees: chat template plus the assistant turn opening."""
        return self.tokenizer.apply_chat_template(  # type: ignore[return-value]  # tokenize=False gives the text
            [{"role": r, "content": c} for r, c in messages], tokenize=False, add_generation_prompt=True
        )

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text (the chat template already holds the special tokens)."""
        if not texts:
            return []
        return list(self.tokenizer(list(texts), add_special_tokens=False)["input_ids"])

    def count_tokens(self, text: str) -> int:
        return len(self.encode([text])[0])

    # -- option probabilities --------------------------------------------------------

    def option_probs(self, requests: Sequence[OptionsRequest]) -> list[tuple[tuple[float, ...], int]]:
        """Probability of each option after the prompt and answer prefix, renormalized over the options.

        A multi-token option's probability is the product of its tokens'
        probabilities; options are compared on the tokens after their longest
        common tokenized prefix (so "Answer: " + "A" is scored as " A").
        """
        torch = self.torch
        rows: list[_Row] = []
        plans: list[tuple[list[int], int]] = []  # per request: option -> row slot, prompt tokens
        for _i, req in enumerate(requests):
            if not req.options:
                raise BackendError("an options request needs at least one option")
            context = self.render(req.messages) + req.answer_prefix
            full = self.encode([context + opt for opt in req.options])
            cut = _common_prefix_len(full)
            # Every option must keep at least one token of its own to be scored.
            cut = min(cut, min(len(f) for f in full) - 1)
            if cut < 1:
                raise BackendError("an options request needs a non-empty prompt")
            rests = [f[cut:] for f in full]
            group = _group_key(req.messages)
            if all(len(r) == 1 for r in rests):
                slot = len(rows)
                rows.append(_Row(slot, full[0][:cut], group, 1, [[r[0] for r in rests]], normalize=False))
                plans.append(([slot] * len(rests), cut))
            else:
                slots = []
                for rest in rests:
                    slots.append(len(rows))
                    rows.append(_Row(len(rows), full[0][:cut] + rest[:-1], group, len(rest), [[t] for t in rest]))
                plans.append((slots, cut))
        # Requests whose rows are all scored, reported pack by pack (progress: models/row_progress).
        left = [len(set(slots)) for slots, _ in plans]
        owner = {slot: i for i, (slots, _) in enumerate(plans) for slot in set(slots)}

        def scored(chunk: list[_Row]) -> None:
            finished = 0
            for row in chunk:
                left[owner[row.index]] -= 1
                finished += left[owner[row.index]] == 0
            rows_done(finished)

        logprobs = self._score_rows(rows, scored)
        results: list[tuple[tuple[float, ...], int]] = []
        for slots, prompt_tokens in plans:
            if len(set(slots)) == 1:
                scores = torch.tensor(logprobs[slots[0]])
            else:
                scores = torch.tensor([sum(logprobs[s]) for s in slots])
            probs = torch.softmax(scores.double(), dim=0).tolist()
            results.append((tuple(probs), prompt_tokens))
        return results

    def _score_rows(self, rows: list[_Row], scored: Callable[[list[_Row]], None] | None = None) -> list[list[float]]:
        """Scores of each row's targets: row.targets[j] are scored at position -keep+j.

        Log-probs for rows with ``normalize``; for the others logits may be
        returned instead (they differ by one constant per position, which the
        renormalization over options removes).
        """
        torch = self.torch
        out: list[list[float]] = [[] for _ in rows]
        with self._lock, torch.inference_mode():
            for group_rows in _by_group(rows):
                prefix_len, prefix_kv = self._prefix(group_rows)
                # Rows of like length in a pack: the packed attention pads them to the longest.
                group_rows = sorted(group_rows, key=lambda r: len(r.ids))
                budget = FUSED_PACK_TOKENS if self.fused is not None else PACK_TOKENS
                for chunk in _packs(group_rows, prefix_len, budget):
                    states, are_logits = self.forward_packed(chunk, prefix_len, prefix_kv)
                    for row, values in zip(chunk, self._target_scores(chunk, states, are_logits)):
                        out[row.index] = values
                    if scored is not None:
                        scored(chunk)
        return out

    def _target_scores(self, chunk: list[_Row], states, are_logits: bool) -> list[list[float]]:
        """Each row's target scores from ``states``: one row per kept position, logits or last hidden states."""
        torch = self.torch
        positions: list[tuple[int, list[int], bool]] = []
        at = 0
        for row in chunk:
            for targets in row.targets:
                positions.append((at, targets, row.normalize))
                at += 1
        scores: list[list[float]] = [[] for _ in positions]
        full = [i for i, (_, _, normalize) in enumerate(positions) if normalize or are_logits]
        if full:
            logits = states[[positions[i][0] for i in full]]
            if not are_logits:
                logits = torch.nn.functional.linear(logits, self._option_head, self._option_bias)
                self.stats.logit_rows += len(full)
            logits = logits.float()
            logp = torch.log_softmax(logits, dim=-1)
            for k, i in enumerate(full):
                source = logp if positions[i][2] else logits
                scores[i] = source[k, positions[i][1]].tolist()
        for i, (at, targets, normalize) in enumerate(positions):
            if not (normalize or are_logits):
                assert self._option_head is not None  # raw logits are asked only where the head is kept
                weights = self._option_head[targets]
                logits = weights @ states[at]
                if self._option_bias is not None:
                    logits = logits + self._option_bias[targets]
                self.stats.option_logits += len(targets)
                scores[i] = logits.float().tolist()
        grouped: list[list[float]] = []
        at = 0
        for row in chunk:
            values: list[float] = []
            for _ in row.targets:
                values.extend(scores[at])
                at += 1
            grouped.append(values)
        return grouped

    def forward_packed(self, chunk: list[_Row], prefix_len: int, prefix_kv, kv_out: list | None = None):
        """Run the rows' tokens after the prefix packed into one sequence: no padding at all.

        Each row sees the shared prefix and its own earlier tokens only: with
        the packed attention (llama-like models) every row is attended on its
        own, otherwise a block-diagonal causal mask keeps the rows apart.
        Position ids restart after the prefix for every row. Returns (states,
        are_logits): the last hidden states of each row's last ``keep``
        positions when option logits can be taken from them, else those
        positions' logits; rows in order. ``kv_out`` (fused pass only)
        receives each layer's keys and values (see :meth:`_FusedLlama.forward`).
        """
        torch = self.torch
        from transformers import DynamicCache

        suffixes = [r.ids[prefix_len:] for r in chunk]
        lengths = [len(s) for s in suffixes]
        total = sum(lengths)
        input_ids = torch.tensor([[t for s in suffixes for t in s]])
        starts = [0]
        for n in lengths[:-1]:
            starts.append(starts[-1] + n)
        position_ids = torch.cat([torch.arange(prefix_len, prefix_len + n) for n in lengths]).unsqueeze(0)
        keep_idx = torch.tensor([p for start, n, r in zip(starts, lengths, chunk) for p in range(start + n - r.keep, start + n)])
        extra = {}
        if self._packed:
            extra["packed_rows"] = _packed_rows(torch, starts, lengths, prefix_len)
            # A 4D mask is passed through untouched (our attention ignores it): no dense mask is built.
            mask = torch.ones(1, 1, 1, 1, dtype=torch.bool)
        else:
            segment = torch.repeat_interleave(torch.arange(len(chunk)), torch.tensor(lengths))
            local = position_ids[0] - prefix_len
            own = (segment[:, None] == segment[None, :]) & (local[None, :] <= local[:, None])
            mask = torch.cat([torch.ones(total, prefix_len, dtype=torch.bool), own], dim=1)[None, None]
        cache = DynamicCache(list(prefix_kv)) if prefix_kv is not None else DynamicCache(config=self.model.config)
        with _threads_for(total) as threads:
            if self.fused is not None:
                states = self.fused.forward(input_ids[0], position_ids, prefix_kv, extra["packed_rows"], keep_idx, kv_out)
                are_logits = False
            elif self._option_head is not None:
                out = _stock_pass(self.model.base_model, input_ids, mask, position_ids, cache, **extra)
                states, are_logits = out.last_hidden_state[0, keep_idx], False
            else:
                out = _stock_pass(self.model, input_ids, mask, position_ids, cache, logits_to_keep=keep_idx, **extra)
                states, are_logits = out.logits[0], True
                self.stats.logit_rows += len(keep_idx)
        self.stats.count_pass(threads, total, context=sum(prefix_len * n + n * (n + 1) // 2 for n in lengths))
        return states, are_logits

    # -- generation ----------------------------------------------------------------------

    def generate(self, requests: Sequence[ChatRequest]) -> list[tuple[str, int, int]]:
        """Decode every request in batches; returns (text, prompt_tokens, completion_tokens)."""
        prompts = self.encode([self.render(r.messages) for r in requests])
        rows = [_Row(i, ids, _group_key(r.messages)) for i, (r, ids) in enumerate(zip(requests, prompts))]
        results: list[tuple[str, int, int] | None] = [None] * len(requests)
        with self._lock, self.torch.inference_mode():
            for group_rows in _by_group(rows):
                prefix_len, prefix_kv = self._prefix(group_rows)
                for batch in _batches(group_rows, prefix_len, max_batch=DECODE_BATCH, budget=DECODE_PREFILL_TOKENS):
                    for row, (text, n) in zip(batch, decode(self, batch, [requests[r.index] for r in batch], prefix_len, prefix_kv)):
                        results[row.index] = (text, len(row.ids), n)
        return [r for r in results if r is not None]

    def finish(self, tokens: list[int], stop: tuple[str, ...]) -> str:
        text = str(self.tokenizer.decode(tokens, skip_special_tokens=True))  # one sequence: one str
        cuts = [text.find(s) for s in stop if s and s in text]
        return text[: min(cuts)] if cuts else text

    # -- the shared machinery --------------------------------------------------------------

    def _prefix(self, rows: list[_Row]):
        """The longest token prefix shared by ``rows`` and its KV cache (computed once)."""
        torch = self.torch
        length = _common_prefix_len([r.ids for r in rows])
        # Each row must keep at least one token of its own after the prefix.
        length = min(length, min(len(r.ids) for r in rows) - 1)
        if length < MIN_SHARED_PREFIX or len(rows) < 2:
            return 0, None
        ids = torch.tensor([rows[0].ids[:length]])
        from transformers import DynamicCache

        # The base model only: the prefix's logits are never used.
        with _threads_for(length) as threads:
            out = self.model.base_model(
                input_ids=ids, cache=DynamicCache(config=self.model.config), use_cache=True
            )
        self.stats.count_pass(threads, length, context=length * (length + 1) // 2)
        kv = [(layer.keys, layer.values) for layer in out.cache.layers]
        return length, kv

    def forward_padded(self, batch: list[_Row], prefix_len: int, prefix_kv, keep: int):
        """Run the rows' tokens after the prefix, left-padded, on a copy of the prefix cache.

        Returns (logits of the last ``keep`` positions, cache, attention mask, last position ids).
        """
        torch = self.torch
        from transformers import DynamicCache

        suffixes = [r.ids[prefix_len:] for r in batch]
        width = max(len(s) for s in suffixes)
        n = len(batch)
        input_ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        suffix_mask = torch.zeros((n, width), dtype=torch.long)
        for b, s in enumerate(suffixes):
            input_ids[b, width - len(s) :] = torch.tensor(s)
            suffix_mask[b, width - len(s) :] = 1
        # Positions continue after the prefix and skip the padding in between.
        position_ids = prefix_len + (suffix_mask.cumsum(-1) - 1).clamp(min=0)
        mask = torch.cat([torch.ones((n, prefix_len), dtype=torch.long), suffix_mask], dim=1)
        if prefix_kv is None:
            cache = DynamicCache(config=self.model.config)
        else:
            cache = DynamicCache([(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1)) for k, v in prefix_kv])
        with _threads_for(n * width) as threads:
            out = _stock_pass(self.model, input_ids, mask, position_ids, cache, logits_to_keep=keep)
        self.stats.count_pass(threads, sum(len(s) for s in suffixes), n * width,
                              context=sum(prefix_len * len(s) + len(s) * (len(s) + 1) // 2 for s in suffixes))
        self.stats.logit_rows += n * keep
        return out.logits, out.cache, mask, position_ids[:, -1]
