"""Packed scoring for the transformers backend: rows grouped by shared prefix, packed without padding.

Rows with the same system prompt share a token prefix computed once; the
tokens after it are cut into packs (:func:`_packs`) and attended as a padded
batch in which every row sees only the prefix and itself
(:func:`_packed_attention`, registered with transformers as ``tprompt_packed``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..types import Message

if TYPE_CHECKING:  # torch is imported by the caller (it loads slowly; this module must not)
    from torch import Tensor


#: Tokens in one packed scoring pass. With the packed attention below each
#: row attends only to the prefix and itself, so a pack's cost is linear in its
#: size. Bigger packs make bigger matmuls (2 threads here: 81% of the 1024^3
#: matmul peak at 256 rows, 97% at 512) and fewer passes; past 512 the
#: activations outgrow the caches and the elementwise ops lose what the
#: matmuls gain (measured 256/512/768/1024: 0.66/0.68/0.67/0.66 of the peak).
PACK_TOKENS = 512


#: Model types whose decoder uses transformers' attention interface and whose
#: logits are a plain linear projection of the last hidden state (no soft-cap,
#: no scale): the packed attention and the option-only logits are exact there.
_PLAIN_LLAMA_LIKE = frozenset({"llama", "mistral", "qwen2", "qwen3", "smollm3"})


#: The attention implementation name registered with transformers (see _packed_attention).
PACKED_ATTENTION = "tprompt_packed"


#: A shared prefix shorter than this is not worth a separate pass.
MIN_SHARED_PREFIX = 8


@dataclass
class _Row:
    """One sequence to run: score ``targets`` at its last positions, or decode from its end."""

    index: int
    ids: list[int]
    group: object
    keep: int = 1
    targets: list[list[int]] = field(default_factory=list)
    #: The targets' scores must be true log-probs (a multi-token option sums
    #: them over positions); otherwise any per-position constant may be left
    #: in, as the options of one position are renormalized together.
    normalize: bool = True


def _common_prefix_len(seqs: Sequence[Sequence[int]]) -> int:
    if not seqs:
        return 0
    first = seqs[0]
    length = min(len(s) for s in seqs)
    for other in seqs[1:]:
        i = 0
        while i < length and other[i] == first[i]:
            i += 1
        length = i
    return length


def _group_key(messages: Sequence[Message]) -> object:
    # Requests with the same system prompt share a token prefix; others rarely do.
    return messages[0][1] if messages and messages[0][0] == "system" else None


def _by_group(rows: list[_Row]) -> list[list[_Row]]:
    groups: dict[object, list[_Row]] = {}
    for row in rows:
        groups.setdefault(row.group, []).append(row)
    return list(groups.values())


def _batches(rows: list[_Row], prefix_len: int, *, max_batch: int, budget: int) -> list[list[_Row]]:
    """Rows sorted by length and cut into batches of at most ``max_batch`` rows and ``budget`` padded tokens."""
    ordered = sorted(rows, key=lambda r: len(r.ids))
    batches: list[list[_Row]] = []
    current: list[_Row] = []
    for row in ordered:
        width = len(row.ids) - prefix_len
        if current and ((len(current) + 1) * width > budget or len(current) >= max_batch):
            batches.append(current)
            current = []
        current.append(row)
    if current:
        batches.append(current)
    return batches


def _packs(rows: list[_Row], prefix_len: int, budget: int = PACK_TOKENS) -> list[list[_Row]]:
    """Rows cut into packs of about ``budget`` tokens after the prefix (a long row alone)."""
    packs: list[list[_Row]] = []
    current: list[_Row] = []
    size = 0
    for row in rows:
        n = len(row.ids) - prefix_len
        if current and size + n > budget:
            packs.append(current)
            current, size = [], 0
        current.append(row)
        size += n
    if current:
        packs.append(current)
    return packs


@dataclass
class _PackedRows:
    """Where each row of a packed pass sits, for :func:`_packed_attention`.

    The rows are attended as one padded batch (rows x longest row): one
    attention call per layer instead of one per row.
    """

    rows: int
    width: int  # the longest row
    gather: Tensor  # (rows * width,) packed position of each padded slot (the row's last token for padding)
    scatter: Tensor  # (tokens,) padded slot of each packed token
    mask: Tensor  # (rows, 1, width, prefix + width) additive: 0 on the prefix and the row's own earlier tokens


def _packed_rows(torch, starts: list[int], lengths: list[int], prefix_len: int) -> _PackedRows:
    rows, width = len(lengths), max(lengths)
    slot = torch.arange(width)
    length = torch.tensor(lengths)
    gather = (torch.tensor(starts)[:, None] + torch.minimum(slot[None, :], length[:, None] - 1)).reshape(-1)
    scatter = torch.cat([torch.arange(n) + r * width for r, n in enumerate(lengths)])
    own = (slot[None, :] <= slot[:, None])[None] & (slot[None, None, :] < length[:, None, None])
    allowed = torch.cat([torch.ones(rows, width, prefix_len, dtype=torch.bool), own], dim=2)[:, None]
    # Additive once per pass, not converted from bool by sdpa in every layer.
    mask = torch.zeros(allowed.shape).masked_fill_(~allowed, float("-inf"))
    return _PackedRows(rows, width, gather, scatter, mask)


def _packed_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, packed_rows=None, **kwargs):
    """sdpa attention for a packed pass (``packed_rows`` given), else transformers' sdpa.

    A packed pass holds several rows one after the other after a shared
    prefix (already in the cache: ``key`` is prefix + packed tokens). A dense
    block-diagonal mask would make every query score every key of the pack,
    most of them masked; here the rows are attended as a padded batch, each
    row's queries meeting only the prefix's keys and its own, so attention
    costs about what the rows need whatever the pack size.
    """
    from torch.nn.functional import scaled_dot_product_attention
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if packed_rows is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)
    import torch

    pk = packed_rows
    heads, kv_heads, dim = query.shape[1], key.shape[1], query.shape[3]
    prefix = key.shape[2] - query.shape[2]

    def padded(x, offset):  # (1, h, prefix + tokens, d) -> (rows, h, width, d)
        rows = x[0].index_select(1, pk.gather + offset) if offset else x[0].index_select(1, pk.gather)
        return rows.view(x.shape[1], pk.rows, pk.width, dim).transpose(0, 1)

    q = padded(query, 0)
    k, v = padded(key, prefix), padded(value, prefix)
    if prefix:
        k = torch.cat([key[:, :, :prefix].expand(pk.rows, -1, -1, -1), k], dim=2)
        v = torch.cat([value[:, :, :prefix].expand(pk.rows, -1, -1, -1), v], dim=2)
    # enable_gqa: the key/value heads are shared by their query heads without being copied.
    out = scaled_dot_product_attention(q, k, v, attn_mask=pk.mask.to(query.dtype), scale=scaling, enable_gqa=heads != kv_heads)
    # (rows, heads, width, d) -> (1, tokens, heads, d), padding dropped
    out = out.transpose(0, 1).reshape(heads, pk.rows * pk.width, dim).index_select(1, pk.scatter)
    return out.transpose(0, 1).unsqueeze(0).contiguous(), None


_attention_registered = False


def _register_packed_attention() -> None:
    global _attention_registered
    if _attention_registered:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(PACKED_ATTENTION, _packed_attention)
    # Generation builds its padding masks as for sdpa.
    AttentionMaskInterface.register(PACKED_ATTENTION, sdpa_mask)
    _attention_registered = True
