"""Decoding a batch with the local engine: one prefill, then one token per live row per step.

Every row of the batch decodes together on every core; a row leaves the
batch when it ends (end of text, a stop string, its token limit). On a plain
Llama (the embedded SmolLM2) the prefill is one packed pass over the rows
(no padding, the shared prefix once) that keeps its keys and values, and the
steps run through the fused layers (:meth:`_FusedLlama.decode_step`) on a
cache preallocated for every step; other models use their stock layers with
left padding and transformers' cache.

Stop strings are looked for in the decoded tail of a row only (a stop of
``k`` characters spans at most ``4k`` byte-level tokens), and confirmed on the
whole text before the row ends, so the texts are those of decoding the whole
row at every step.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..row_progress import rows_done
from ..types import ChatRequest
from .threads import cpu_threads, torch_threads

#: Rows decoded together. A step's matmuls read every weight once whatever
#: the rows, and on a CPU they run far below their peak at a few rows
#: (measured here, fp32 on 2 threads: 4 rows 77 ms, 16 rows 89 ms, 64 rows
#: 160 ms for all the layers' matmuls of SmolLM2-135M).
DECODE_BATCH = 32

#: Prompt tokens (rows x padded length) of one decoding batch's prefill.
DECODE_PREFILL_TOKENS = 32 * 384


def decode(engine, batch, reqs: Sequence[ChatRequest], prefix_len: int, prefix_kv) -> list[tuple[str, int]]:
    """(text, generated tokens) of each row of ``batch``, decoded together."""
    torch = engine.torch
    n = len(batch)
    limit = max(r.max_tokens for r in reqs)
    fused = engine.fused
    state = cache = mask = None
    if fused is not None:
        # One packed pass over every row (no padding), keeping each layer's keys and values.
        kv: list = []
        states, _ = engine.forward_packed(batch, prefix_len, prefix_kv, kv_out=kv)
        step_logits = fused.head(states)
        lengths = [len(r.ids) - prefix_len for r in batch]
        state = fused.start_decode(kv, lengths, prefix_len, prefix_len + max(lengths) + limit)
        last_pos = torch.tensor([prefix_len + length - 1 for length in lengths])
    else:
        logits, cache, mask, last_pos = engine.forward_padded(batch, prefix_len, prefix_kv, 1)
        step_logits = logits[:, -1, :]
    generators = []
    for req in reqs:
        gen = torch.Generator()
        gen.manual_seed(_sample_seed(req))
        generators.append(gen)
    produced: list[list[int]] = [[] for _ in range(n)]
    texts: list[str | None] = [None] * n
    tails = [4 * max((len(s) for s in r.stop if s), default=0) + 2 for r in reqs]
    active = list(range(n))  # batch rows still decoding, in cache order
    slots = list(range(n))  # the fused cache's row of each active row
    with torch_threads(cpu_threads()) as threads:
        for _ in range(limit):
            greedy = torch.argmax(step_logits, dim=-1).tolist()
            next_ids, still = [], []
            for k, b in enumerate(active):
                req = reqs[b]
                token = greedy[k] if req.temperature <= 0 else _pick(step_logits[k].float(), req, generators[b], torch)
                if token in engine.eos_ids:
                    texts[b] = engine.finish(produced[b], req.stop)
                    rows_done(1)
                    continue
                produced[b].append(token)
                if len(produced[b]) >= req.max_tokens or _stopped(engine, produced[b], req.stop, tails[b]):
                    texts[b] = engine.finish(produced[b], req.stop)
                    rows_done(1)
                    continue
                still.append(k)
                next_ids.append(token)
            if not still:
                break
            if len(still) < len(active):
                active = [active[k] for k in still]
                if state is None:
                    assert cache is not None and mask is not None  # the stock layers' cache
                    keep = torch.tensor(still)
                    last_pos = last_pos[keep]
                    cache.batch_select_indices(keep)
                    mask = mask[keep]
                else:
                    # A finished row stays in the cache (its slot decodes a pad token) until
                    # half the rows have finished: dropping rows copies the whole cache.
                    slots = [slots[k] for k in still]
                    if 2 * len(slots) <= state.rows:
                        keep = torch.tensor(slots)
                        state.keep(keep)
                        last_pos = last_pos[keep]
                        slots = list(range(len(slots)))
            last_pos = last_pos + 1
            if state is not None:
                ids = torch.full((state.rows,), engine.pad_id, dtype=torch.long)
                ids[slots] = torch.tensor(next_ids)
                step_logits = fused.decode_step(state, ids, last_pos)
                if len(slots) < state.rows:
                    step_logits = step_logits[slots]
            else:
                assert mask is not None  # the stock layers decode with a mask
                ids = torch.tensor(next_ids)
                mask = torch.cat([mask, torch.ones(len(active), 1, dtype=mask.dtype)], dim=1)
                out = engine.model(
                    input_ids=ids.unsqueeze(1), attention_mask=mask, position_ids=last_pos.unsqueeze(1),
                    cache=cache, use_cache=True, logits_to_keep=1,
                )
                step_logits, cache = out.logits[:, -1, :], out.cache
            engine.stats.count_pass(threads, len(active), state.rows if state is not None else len(active))
    for b in range(n):
        if texts[b] is None:
            texts[b] = engine.finish(produced[b], reqs[b].stop)
            rows_done(1)
    return [(texts[b] or "", len(produced[b])) for b in range(n)]


def _stopped(engine, tokens: list[int], stop: tuple[str, ...], tail: int) -> bool:
    """Whether the text of ``tokens`` holds a stop string, looking at the new tail first."""
    stops = [s for s in stop if s]
    if not stops:
        return False
    end = engine.tokenizer.decode(tokens[-tail:], skip_special_tokens=True)
    if not any(s in end for s in stops):
        return False
    text = engine.tokenizer.decode(tokens, skip_special_tokens=True)
    return any(s in text for s in stops)


def _sample_seed(req: ChatRequest) -> int:
    import hashlib
    import json

    text = json.dumps([req.seed, req.sample_index, list(req.messages)], ensure_ascii=False)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") & ((1 << 63) - 1)


def _pick(logits, req: ChatRequest, generator, torch) -> int:
    if req.temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / req.temperature, dim=-1)
    if req.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        cumulative = torch.cumsum(sorted_probs, dim=-1)
        drop = cumulative - sorted_probs > req.top_p
        sorted_probs[drop] = 0.0
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=generator))
