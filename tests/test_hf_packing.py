"""The transformers backend's packed scoring pieces, without a model: packed attention and the thread policy."""

from __future__ import annotations

import os

import pytest
import torch

from tprompt.models.local import llama, packing
from tprompt.models.local import threads as thread_policy


def _dense_reference(query, key, value, lengths, prefix):
    """sdpa with the dense block-diagonal causal mask the packed attention replaces."""
    total = sum(lengths)
    segment = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    local = torch.cat([torch.arange(n) for n in lengths])
    own = (segment[:, None] == segment[None, :]) & (local[None, :] <= local[:, None])
    mask = torch.cat([torch.ones(total, prefix, dtype=torch.bool), own], dim=1)[None, None]
    groups = query.shape[1] // key.shape[1]
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1), attn_mask=mask, scale=0.125
    )
    return out.transpose(1, 2)


class _Module:
    num_key_value_groups = 3
    is_causal = True


@pytest.mark.parametrize("prefix", [0, 7])
def test_packed_attention_equals_the_dense_block_mask(prefix):
    torch.manual_seed(0)
    lengths = [5, 1, 9, 3]
    starts = [0, 5, 6, 15]
    total = sum(lengths)
    query = torch.randn(1, 9, total, 64)
    key, value = torch.randn(1, 3, prefix + total, 64), torch.randn(1, 3, prefix + total, 64)
    rows = packing._packed_rows(torch, starts, lengths, prefix)
    out, _ = packing._packed_attention(_Module(), query, key, value, None, scaling=0.125, packed_rows=rows)
    assert out.shape == (1, total, 9, 64)
    assert torch.allclose(out, _dense_reference(query, key, value, lengths, prefix), atol=1e-5)


def test_packed_attention_without_rows_is_plain_sdpa():
    torch.manual_seed(1)
    query, key, value = torch.randn(2, 9, 4, 64), torch.randn(2, 3, 4, 64), torch.randn(2, 3, 4, 64)
    out, _ = packing._packed_attention(_Module(), query, key, value, None, scaling=0.125)
    expected = torch.nn.functional.scaled_dot_product_attention(
        query, key.repeat_interleave(3, 1), value.repeat_interleave(3, 1), is_causal=True, scale=0.125
    )
    assert torch.allclose(out, expected.transpose(1, 2), atol=1e-5)


@pytest.mark.parametrize(
    ("others", "threads"),
    [
        (0.0, 2),  # the machine is ours
        (0.3, 2),  # a little work elsewhere
        (0.99, 1),  # another process keeps a core busy
        (3.0, 1),
    ],
)
def test_threads_leave_the_cores_others_use(monkeypatch, others, threads):
    monkeypatch.delenv("TPROMPT_TORCH_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(thread_policy._OTHERS, "update", lambda: others)
    assert thread_policy.cpu_threads() == threads


def test_other_load_is_the_machine_minus_this_process(monkeypatch):
    readings = iter([(0.0, 0.0, 0.0), (2.0, 3.0, 2.0), (2.1, 3.2, 2.1), (4.0, 5.0, 3.8)])
    monkeypatch.setattr(thread_policy, "_cpu_reading", lambda: next(readings))
    meter = thread_policy._OtherLoad()
    assert meter.update() == pytest.approx(0.5)  # 1.5 cores busy, 1.0 of them ours
    assert meter.update() == pytest.approx(0.5)  # too soon after: the last figure
    assert meter.update() == pytest.approx(0.1)  # since the last counted reading: 1.0 busy, 0.9 ours


def test_without_proc_stat_the_load_average_decides(monkeypatch):
    monkeypatch.delenv("TPROMPT_TORCH_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(thread_policy._OTHERS, "update", lambda: None)
    monkeypatch.setattr(os, "getloadavg", lambda: (3.2, 3.2, 3.2))
    assert thread_policy.cpu_threads() == 1
    monkeypatch.setattr(os, "getloadavg", lambda: (1.9, 1.9, 1.9))
    assert thread_policy.cpu_threads() == 2


def test_threads_from_the_environment_win(monkeypatch):
    monkeypatch.setenv("TPROMPT_TORCH_THREADS", "3")
    monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    assert thread_policy.cpu_threads() == 3


def _tiny_llama(**overrides):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(2)
    config = LlamaConfig(
        vocab_size=64, hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=6,
        num_key_value_heads=2, max_position_embeddings=128, **overrides,
    )
    model = LlamaForCausalLM(config).eval()
    packing._register_packed_attention()
    model.set_attn_implementation(packing.PACKED_ATTENTION)
    return model


@pytest.mark.parametrize("prefix", [0, 6])
def test_fused_llama_pass_equals_the_stock_layers(prefix):
    from transformers import DynamicCache

    model = _tiny_llama()
    torch.manual_seed(3)
    stock_q = model.model.layers[0].self_attn.q_proj.weight.clone()
    fused = llama._FusedLlama.build(model)
    assert fused is not None
    # The modules' weights are now views of the fused ones, with the same values.
    assert torch.equal(model.model.layers[0].self_attn.q_proj.weight, stock_q)
    lengths, starts = [4, 1, 7], [0, 4, 5]
    total = sum(lengths)
    ids = torch.randint(0, 64, (1, prefix + total))
    with torch.inference_mode():
        prefix_kv = None
        cache = DynamicCache(config=model.config)
        if prefix:
            out = model.model(input_ids=ids[:, :prefix], past_key_values=cache, use_cache=True)
            prefix_kv = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
            cache = DynamicCache(list(prefix_kv))
        position_ids = torch.cat([torch.arange(prefix, prefix + n) for n in lengths]).unsqueeze(0)
        rows = packing._packed_rows(torch, starts, lengths, prefix)
        keep = torch.tensor([3, 4, 10, 11])
        expected = model.model(
            input_ids=ids[:, prefix:], attention_mask=torch.ones(1, 1, 1, 1, dtype=torch.bool),
            position_ids=position_ids, past_key_values=cache, use_cache=True, packed_rows=rows,
        ).last_hidden_state[0, keep]
        got = fused.forward(ids[0, prefix:], position_ids, prefix_kv, rows, keep)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-5)


def test_fused_llama_pass_declines_biased_projections():
    assert llama._FusedLlama.build(_tiny_llama(attention_bias=True)) is None


@pytest.mark.parametrize("prefix", [0, 3])
def test_fused_decoding_equals_the_stock_layers_with_a_cache(prefix):
    """A packed prefill of two rows of different lengths, then decoding steps: the stock model's logits."""
    from transformers import DynamicCache

    model = _tiny_llama()
    fused = llama._FusedLlama.build(model)
    torch.manual_seed(4)
    shared = torch.randint(1, 64, (prefix,)).tolist()
    rows = [shared + torch.randint(1, 64, (n,)).tolist() for n in (2, 5)]
    lengths = [len(r) - prefix for r in rows]
    width = max(len(r) for r in rows)
    # The stock way: left-padded rows, transformers' cache.
    ids = torch.tensor([[0] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=mask, position_ids=position_ids,
                    cache=DynamicCache(config=model.config), use_cache=True)
        stock_cache, stock_logits = out.cache, out.logits[:, -1]
        # Ours: the prefix once, the rows packed after it, keys and values kept for decoding.
        prefix_kv = None
        if prefix:
            pre = model.model(input_ids=torch.tensor([shared]), cache=DynamicCache(config=model.config), use_cache=True)
            prefix_kv = [(layer.keys, layer.values) for layer in pre.cache.layers]
        packed = torch.tensor([t for r in rows for t in r[prefix:]])
        starts = [0, lengths[0]]
        packed_pos = torch.cat([torch.arange(prefix, prefix + n) for n in lengths]).unsqueeze(0)
        kv: list = []
        states = fused.forward(packed, packed_pos, prefix_kv, packing._packed_rows(torch, starts, lengths, prefix),
                               torch.tensor([lengths[0] - 1, sum(lengths) - 1]), kv)
        got = fused.head(states)
        assert torch.allclose(got, stock_logits, atol=1e-5)
        ours = fused.start_decode(kv, lengths, prefix, prefix + max(lengths) + 4)
        last = torch.tensor([prefix + n - 1 for n in lengths])
        token = stock_logits.argmax(-1)
        stock_mask = mask
        for _ in range(3):
            last = last + 1
            stock_mask = torch.cat([stock_mask, torch.ones(2, 1, dtype=mask.dtype)], dim=1)
            stock = model(input_ids=token[:, None], attention_mask=stock_mask, position_ids=last[:, None],
                          cache=stock_cache, use_cache=True).logits[:, -1]
            assert torch.allclose(fused.decode_step(ours, token, last), stock, atol=1e-5)
            token = stock.argmax(-1)
        # A finished row leaves; the other decodes on unchanged.
        ours.keep(torch.tensor([1]))
        stock_cache.batch_select_indices(torch.tensor([1]))
        last, stock_mask, token = last[1:] + 1, torch.cat([stock_mask[1:], torch.ones(1, 1, dtype=mask.dtype)], dim=1), token[1:]
        stock = model(input_ids=token[:, None], attention_mask=stock_mask, position_ids=last[:, None],
                      cache=stock_cache, use_cache=True).logits[:, -1]
        assert torch.allclose(fused.decode_step(ours, token, last), stock, atol=1e-5)


class _CharTokenizer:
    """Token i is chr(i), or two characters for ids above 1000 (a stop may span tokens)."""

    def decode(self, tokens, skip_special_tokens=True):
        return "".join(chr(t) if t < 1000 else chr(t - 1000) * 2 for t in tokens)


class _Backend:
    tokenizer = _CharTokenizer()


@pytest.mark.parametrize(
    ("text", "stop", "expected"),
    [
        ("hello Answer: B", ("Answer:",), True),
        ("hello Answer", ("Answer:",), False),
        ("a\n\nb", ("\n\n",), True),
        ("no stop here", (), False),
        ("the stop came long ago: STOP and many words after it", ("STOP",), False),
    ],
)
def test_stop_strings_are_found_in_the_decoded_tail(text, stop, expected):
    from tprompt.models.local.decode import _stopped

    tokens = [ord(c) for c in text]
    tail = 4 * max((len(s) for s in stop), default=0) + 2
    # Checked after every token, as decoding does: a stop is seen when its last token arrives.
    seen = any(_stopped(_Backend(), tokens[:i], stop, tail) for i in range(1, len(tokens) + 1))
    assert seen == (expected or any(s in text for s in stop))
    assert _stopped(_Backend(), tokens, stop, tail) == expected
