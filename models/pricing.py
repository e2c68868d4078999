"""What model calls cost: a small price table, per-run overrides, and the cost of one call.

Prices are US dollars per million tokens, ``(input, output)``, as the
providers list them for standard (not batch, not cached-input) requests.
They change: a run config's ``prices`` table overrides any entry, keyed by the
model spec (``prices = {"openai:gpt-4o-mini" = [0.15, 0.6]}``). A model not
in either (a local server, the embedded model) costs nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

#: (input, output) USD per 1M tokens, by provider model name (prefix matches for dated names).
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5": (1.25, 10.00),
    "o4-mini": (1.10, 4.40),
    "gpt-3.5-turbo": (0.50, 1.50),
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-sonnet-4-5": (3.00, 15.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-opus-4-1": (15.00, 75.00),
    "claude-opus-4": (15.00, 75.00),
}

#: Providers the table speaks for (a served model named like one is not billed by it).
_BILLED = ("openai", "anthropic")


def price_for(provider: str, model: str, *, base_url: str | None = None) -> tuple[float, float] | None:
    """The listed ``(input, output)`` price of ``provider:model``, or None (unknown, or a server of one's own)."""
    if provider not in _BILLED or base_url:
        return None
    for name in sorted(PRICES, key=len, reverse=True):  # the longest prefix: gpt-4o-mini before gpt-4o
        if model == name or model.startswith(name + "-"):
            return PRICES[name]
    return None


def call_cost(price: Sequence[float] | None, prompt_tokens: int, completion_tokens: int) -> float | None:
    """USD of one call at ``price``; None when the price is unknown."""
    if price is None:
        return None
    return (prompt_tokens * float(price[0]) + completion_tokens * float(price[1])) / 1_000_000


def override(spec: str, prices: Mapping[str, Sequence[float]], default: tuple[float, float] | None):
    """The run's own price for ``spec`` if it gives one, else ``default``."""
    given = prices.get(spec)
    return (float(given[0]), float(given[1])) if given is not None else default


#: Columns of :func:`spend_rows`.
SPEND_COLUMNS = ("agent", "stage", "calls", "prompt tokens", "completion tokens", "USD")


def spend_rows(spend: Sequence[tuple[str, str, int, int, int, float | None]]) -> list[tuple[str, ...]]:
    """Paid calls per (agent, stage) as text rows, plus a total row; USD ``-`` where no call had a price.

    ``spend`` is :meth:`TranscriptStore.spend`'s output. The CLI, the TUI and
    reports show spend through this one rule.
    """
    rows: list[tuple[str, ...]] = [(agent, stage or "-", str(n), str(pt), str(ct), "-" if usd is None else f"{usd:.4f}")
            for agent, stage, n, pt, ct, usd in spend]
    priced = [row[5] for row in spend if row[5] is not None]
    rows.append(("total", "", str(sum(r[2] for r in spend)), str(sum(r[3] for r in spend)),
                 str(sum(r[4] for r in spend)), f"{sum(priced):.4f}" if priced else "-"))
    return rows

