"""What this CPU computes natively (read once from its flags): the one place the precision defaults ask."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def bf16_native() -> bool:
    """Whether this CPU multiplies bf16 natively (its flags say avx512_bf16 or amx_bf16, and oneDNN agrees)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            flags = next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), [])
    except OSError:
        return False
    if "avx512_bf16" not in flags and "amx_bf16" not in flags:
        return False
    import torch

    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
