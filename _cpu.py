"""What this CPU computes natively (read once from its flags): the one place the precision defaults ask."""

from __future__ import annotations

from functools import lru_cache

#: The flags fbgemm's packed fp16-weight matmul runs on (AVX2 with FMA, F16C for the fp16 -> fp32 conversion).
FP16_WEIGHT_FLAGS = frozenset({"avx2", "fma", "f16c"})


@lru_cache(maxsize=1)
def flags() -> frozenset[str]:
    """The CPU's flags as ``/proc/cpuinfo`` lists them (empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            return frozenset(next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), []))
    except OSError:
        return frozenset()


def bf16_native() -> bool:
    """Whether this CPU multiplies bf16 natively (its flags say avx512_bf16 or amx_bf16, and oneDNN agrees)."""
    return bool({"avx512_bf16", "amx_bf16"} & flags()) and _onednn_bf16()


def fp16_weights_fast() -> bool:
    """Whether this CPU runs fbgemm's packed fp16-weight matmul on its vector units (AVX2, FMA, F16C; fbgemm built in)."""
    return flags() >= FP16_WEIGHT_FLAGS and _fbgemm()


@lru_cache(maxsize=1)
def _onednn_bf16() -> bool:
    import torch

    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


@lru_cache(maxsize=1)
def _fbgemm() -> bool:
    import torch

    return "fbgemm" in torch.backends.quantized.supported_engines
