"""The fused Llama scoring pass: the stock layers' arithmetic in fewer, bigger operations."""

from __future__ import annotations

from .packing import _PackedRows
from .precision import Bf16Weight, Fp16Weight, Precision, weight_for

#: The same for the fused Llama pass (:class:`_FusedLlama`): with fewer
#: elementwise passes over the activations bigger packs pay again (measured
#: 512/768/1024 on 2 threads: 3.39/3.30/3.37 s for the 48-question benchmark).
FUSED_PACK_TOKENS = 768


class _FusedLlama:
    """A plain Llama decoder's packed scoring pass with fewer, bigger operations.

    The same arithmetic as transformers' Llama layers (fp32 throughout) with
    q/k/v as one matmul and gate/up as one, the residual adds folded into the
    o/down projections (``addmm``), rotary applied to q and k together, and
    the final norm taken at the scored positions only. On 2 threads the stock
    layers' small elementwise operations and their thread hand-offs took
    about a seventh of a pass; this raised the benchmark's fast path ~10%. The
    fused weights are the model's own: q/k/v and gate/up are rebound as views
    of the concatenated tensors, so no memory is duplicated and every other
    path (generation, the prefix pass) runs on the very same numbers.
    """

    def __init__(self, model, layers: list[tuple]) -> None:
        self.base = model.base_model
        self.layers = layers
        config = model.config
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.head = model.get_output_embeddings()

    @classmethod
    def build(cls, model, precision: Precision = "fp32") -> _FusedLlama | None:
        """The fused pass for a bias-free SiLU Llama, else None (the stock layers are used).

        At int8 the fused matrices are quantized and prepacked (:class:`Int8Weight`),
        at fp16 packed as fbgemm's fp16 weights (:class:`Fp16Weight`);
        at fp32 they are the model's own weights; at bf16 the model's weights
        become bf16 views of the fused bf16 matrices (:class:`Bf16Weight`;
        :func:`bf16_stock` then makes the stock layers multiply with them).
        """
        import torch

        config = model.config
        if getattr(config, "model_type", None) != "llama" or getattr(config, "hidden_act", None) != "silu":
            return None
        if getattr(config, "pretraining_tp", 1) != 1:
            return None
        layers = []
        for layer in model.base_model.layers:
            attn, mlp = layer.self_attn, layer.mlp
            linears = (attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj, mlp.gate_proj, mlp.up_proj, mlp.down_proj)
            if any(not isinstance(x, torch.nn.Linear) or x.bias is not None for x in linears):
                return None
            layers.append((layer, attn.scaling))
        fused = []
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        with torch.no_grad():
            for layer, scaling in layers:
                attn, mlp = layer.self_attn, layer.mlp
                qkv = _concat_linears([attn.q_proj, attn.k_proj, attn.v_proj], dtype)
                gate_up = _concat_linears([mlp.gate_proj, mlp.up_proj], dtype)
                o, down = _concat_linears([attn.o_proj], dtype), _concat_linears([mlp.down_proj], dtype)
                fused.append((
                    layer.input_layernorm.weight, layer.input_layernorm.variance_epsilon, weight_for(qkv, precision),
                    weight_for(o, precision),
                    layer.post_attention_layernorm.weight, layer.post_attention_layernorm.variance_epsilon,
                    weight_for(gate_up, precision), weight_for(down, precision), scaling,
                ))
        built = cls(model, fused)
        if precision in ("bf16", "fp16") and built.head.bias is None:
            # the decoding steps' vocabulary projection at that precision too (bf16: measured 1.25x tokens/s)
            head = model.get_output_embeddings().weight.detach().t()
            # fp16: packed only (a decoding batch is fewer rows than FP16_FBGEMM_ROWS); the tied embeddings stay fp32
            built.head = (Bf16Weight(head) if precision == "bf16" else Fp16Weight(head, few_rows_only=True)).mm
        return built

    def forward(self, input_ids, position_ids, prefix_kv, pk: _PackedRows, keep_idx, kv_out: list | None = None):
        """Last hidden states (final norm applied) at ``keep_idx`` of a packed pass over ``input_ids``.

        With ``kv_out`` each layer's keys and values are appended to it, one
        row each after the prefix (rows, kv heads, prefix + longest row, dim;
        a row's slots past its end hold copies of its last token): the cache a
        decoding batch starts from (:meth:`start_decode`).
        """
        import torch
        from torch.nn.functional import rms_norm, scaled_dot_product_attention

        base = self.base
        heads, kv_heads, dim = self.heads, self.kv_heads, self.dim
        hidden = base.embed_tokens(input_ids)  # (tokens, hidden)
        rope = self._rope(hidden, position_ids)
        q_width = heads * dim
        hidden_width = hidden.shape[1]
        mask = pk.mask.to(hidden.dtype)
        gqa = heads != kv_heads
        for i, (ln1, eps1, qkv_w, o_w, ln2, eps2, gate_up_w, down_w, scaling) in enumerate(self.layers):
            qk, v = self._qkv(rms_norm(hidden, (hidden_width,), ln1, eps1), qkv_w, rope)
            # (tokens, h, d) -> (rows, h, width, d), each row padded to the longest
            q = qk[:, :heads].index_select(0, pk.gather).view(pk.rows, pk.width, heads, dim).transpose(1, 2)
            k = qk[:, heads:].index_select(0, pk.gather).view(pk.rows, pk.width, kv_heads, dim).transpose(1, 2)
            v = v.index_select(0, pk.gather).view(pk.rows, pk.width, kv_heads, dim).transpose(1, 2)
            if prefix_kv is not None:
                pre_k, pre_v = prefix_kv[i]
                k = torch.cat([pre_k.expand(pk.rows, -1, -1, -1), k], dim=2)
                v = torch.cat([pre_v.expand(pk.rows, -1, -1, -1), v], dim=2)
            if kv_out is not None:
                kv_out.append((k, v))
            out = scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scaling, enable_gqa=gqa)
            out = out.transpose(1, 2).reshape(pk.rows * pk.width, q_width).index_select(0, pk.scatter)
            hidden = o_w.addmm(hidden, out)  # residual + o_proj(attention)
            hidden = self._mlp(hidden, ln2, eps2, gate_up_w, down_w)
        norm = base.norm
        return rms_norm(hidden[keep_idx], (hidden_width,), norm.weight, norm.variance_epsilon)

    # -- the layers' shared pieces -----------------------------------------------------------

    def _rope(self, hidden, position_ids):
        """(cos, sin) of ``position_ids`` shaped for :meth:`_qkv` (tokens, 1, dim)."""
        import torch

        cos, sin = self.base.rotary_emb(hidden, position_ids=position_ids)
        half = self.dim // 2
        # rotate_half(x) * sin == roll(x, half) * (sin with its first half negated)
        return cos[0][:, None, :], torch.cat([-sin[0][:, :half], sin[0][:, half:]], dim=-1)[:, None, :]

    def _qkv(self, x, qkv_w, rope):
        """Queries and keys (rotated; tokens, heads + kv heads, dim) and values (tokens, kv heads, dim) of ``x``."""

        heads, kv_heads, dim = self.heads, self.kv_heads, self.dim
        tokens, cut = x.shape[0], (heads + kv_heads) * dim
        qkv = qkv_w.mm(x)
        cos, sin = rope
        qk = qkv[:, :cut].view(tokens, heads + kv_heads, dim)
        qk = qk * cos + qk.roll(dim // 2, dims=-1) * sin
        return qk, qkv[:, cut:].view(tokens, kv_heads, dim)

    @staticmethod
    def _mlp(hidden, norm_w, eps, gate_up_w, down_w):
        """``hidden`` plus the MLP of its norm (SiLU-gated; the residual add folded into the down projection)."""
        from torch.nn.functional import rms_norm, silu

        gate_up = gate_up_w.mm(rms_norm(hidden, (hidden.shape[1],), norm_w, eps))
        inter = gate_up.shape[1] // 2
        return down_w.addmm(hidden, silu(gate_up[:, :inter]).mul_(gate_up[:, inter:]))

    # -- decoding ---------------------------------------------------------------------------

    def start_decode(self, kv: list, lengths: list[int], prefix_len: int, capacity: int) -> _DecodeCache:
        """A decoding cache for ``capacity`` positions holding a packed prefill's keys and values.

        ``kv`` is what :meth:`forward` put in ``kv_out``; row ``r`` holds the
        prefix and its own ``lengths[r]`` tokens, the slots after them are
        masked until the decoding steps fill the slots after the longest row.
        """
        import torch

        rows, kv_heads, width, dim = kv[0][0].shape
        keys = torch.empty(len(kv), rows, kv_heads, capacity, dim, dtype=kv[0][0].dtype)
        values = torch.empty_like(keys)
        for i, (k, v) in enumerate(kv):
            keys[i, :, :, :width] = k
            values[i, :, :, :width] = v
        slot = torch.arange(capacity)
        own = slot[None, :] - prefix_len < torch.tensor(lengths)[:, None]
        additive = torch.zeros(rows, 1, 1, capacity, dtype=keys.dtype)
        additive[:, 0, 0].masked_fill_(~own, float("-inf"))
        return _DecodeCache(keys, values, additive, width)

    def decode_step(self, state: _DecodeCache, input_ids, position_ids):
        """Logits (rows, vocabulary) of the next token after one new token per row.

        The same arithmetic as the stock layers with a cache; the new keys and
        values are written into ``state``'s preallocated tensors in place
        (transformers' dynamic cache grows by ``torch.cat``, a copy of the
        whole cache per layer and step).
        """
        from torch.nn.functional import rms_norm, scaled_dot_product_attention

        base = self.base
        heads, kv_heads, dim = self.heads, self.kv_heads, self.dim
        rows = input_ids.shape[0]
        at = state.length
        state.mask[:, 0, 0, at] = 0.0
        hidden = base.embed_tokens(input_ids)  # (rows, hidden)
        rope = self._rope(hidden, position_ids[None])
        q_width = heads * dim
        hidden_width = hidden.shape[1]
        mask = state.mask[..., : at + 1]
        gqa = heads != kv_heads
        for i, (ln1, eps1, qkv_w, o_w, ln2, eps2, gate_up_w, down_w, scaling) in enumerate(self.layers):
            qk, v = self._qkv(rms_norm(hidden, (hidden_width,), ln1, eps1), qkv_w, rope)
            state.keys[i, :, :, at] = qk[:, heads:]
            state.values[i, :, :, at] = v
            q = qk[:, :heads].unsqueeze(2)  # (rows, heads, 1, dim)
            k = state.keys[i, :, :, : at + 1]
            v = state.values[i, :, :, : at + 1]
            out = scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scaling, enable_gqa=gqa)
            hidden = o_w.addmm(hidden, out.reshape(rows, q_width))
            hidden = self._mlp(hidden, ln2, eps2, gate_up_w, down_w)
        state.length = at + 1
        norm = base.norm
        return self.head(rms_norm(hidden, (hidden_width,), norm.weight, norm.variance_epsilon))


class _DecodeCache:
    """The keys and values of a decoding batch, preallocated for every step (layers, rows, kv heads, positions, dim)."""

    def __init__(self, keys, values, mask, length: int) -> None:
        self.keys, self.values, self.mask, self.length = keys, values, mask, length

    @property
    def rows(self) -> int:
        return self.keys.shape[1]

    def keep(self, rows) -> None:
        """Drop the rows not in ``rows`` (a tensor of row indices, in order)."""
        self.keys = self.keys.index_select(1, rows)
        self.values = self.values.index_select(1, rows)
        self.mask = self.mask.index_select(0, rows)


def _concat_linears(linears, dtype) -> object:
    """``linears``' weights transposed into one (in, out) matrix of ``dtype``; each linear's weight becomes a view of it.

    ``x @ W`` with W stored (in, out) runs a few percent faster in MKL than
    ``x @ W.T`` with the (out, in) layout at these shapes; no copy is kept.
    """
    import torch

    fused = torch.cat([lin.weight.detach().t() for lin in linears], dim=1).to(dtype).contiguous()
    at = 0
    for lin in linears:
        rows = lin.weight.shape[0]
        lin.weight = torch.nn.Parameter(fused[:, at : at + rows].t(), requires_grad=False)
        at += rows
    return fused
