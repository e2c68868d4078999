"""Precision of the local models' weights: fp32, bf16 (where the CPU multiplies bf16 natively) or int8.

* ``fp32``: the weights as converted; the reference every other precision is
  measured against (``benchmarks/bench_precision.py``).
* ``bf16``: the decoder's linear layers multiply in bfloat16 (bf16 weights,
  each matmul's input rounded to bf16, its output back to fp32); the residual
  stream, the norms, rotary, attention, the KV cache and the option scores stay
  fp32. Only on a CPU with native bf16 matmul (AVX-512 BF16 or AMX): elsewhere
  oneDNN emulates it slower than fp32, so it is refused with one line. The
  default for new runs where the CPU has it (``config.default_precision``):
  measured against fp32 on 200 test questions each of three bundled tasks,
  98.5% / 99.0% / 100% argmax agreement (the whole model in bf16, as the
  first version of this did, gave 95.5% / 92.5% / 100%: the bf16 residual
  stream was most of the difference).
* ``fp16``: the decoder's linear layers (and the decoding steps' vocabulary
  projection) keep fp16 weights packed for fbgemm's fp16 matmul; activations
  and sums stay fp32. The default where the CPU has no native bf16 but AVX2,
  FMA and F16C (issue 34): 99% / 100% / 100% argmax agreement with fp32 on 100
  questions of each task, decoding 1.41x fp32 with every kernel capped to AVX2
  and 2.24x on AVX-512, scoring at fp32's speed (docs/benchmarks.md).
* ``int8``: torch's dynamic int8 linear (weights quantized once per output
  channel, symmetric, and prepacked; activations quantized per pass and per
  tensor) for every linear layer of the decoder; the embeddings, norms,
  attention and the vocabulary projection stay fp32. The fastest (``x86``
  engine: 3.8x fp32's matmuls at 32 rows on AVX-512 VNNI), but 49-89%
  agreement; per-token and SmoothQuant-smoothed activations, 8-bit, or
  sensitive layers kept apart reached 87-100% per task, weight-only int8
  (``_weight_int8pack_mm``'s arithmetic) 83-100% (issue 34,
  ``benchmarks/bench_int8_layers.py``): never a default.

The precision is part of a model's revision (:func:`revision_with`), so
answers computed at one precision are never served from the cache to another;
fp32's revision is the one it always had.
"""

from __future__ import annotations

from functools import lru_cache

from ... import _cpu
from ...config import DEFAULT_PRECISION, PRECISIONS, Precision, default_precision, local_spec
from ...errors import UsageError

#: torch's quantized engine for the int8 linears (see the module doc for the measurement).
INT8_ENGINE = "x86"


#: The mark of a precision in a model's revision. ``bf16w`` (bf16 weights, fp32 between the matmuls) is not
#: ``bf16``, the all-bf16 model's mark of before: the cache never serves the one's answers to the other.
_REVISION_MARKS: dict[str, str] = {"bf16": "bf16w", "fp16": "fp16w", "int8": "int8"}


def revision_with(revision: str, precision: Precision) -> str:
    """``revision`` of the fp32 weights, marked with ``precision`` unless it is fp32 (whose key stays as it was)."""
    return revision if precision == "fp32" else f"{revision}/{_REVISION_MARKS[precision]}"


def check_precision(spec: str, precision: str) -> Precision:
    """``precision`` if ``spec`` can run at it on this machine, else one clear UsageError.

    Raises:
        UsageError: an unknown precision, a precision other than fp32 for a model
            that is not local, or bf16 on a CPU without native bf16 matmul.
    """
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}", hint="use " + ", ".join(PRECISIONS))
    if precision == DEFAULT_PRECISION:
        return precision  # type: ignore[return-value]  # checked against PRECISIONS above
    if not local_spec(spec):
        raise UsageError(
            f"--precision {precision} applies to local models (smollm2, hf:...), not {spec}",
            hint="drop --precision (the server or provider decides how its model computes)",
        )
    if precision == "bf16" and not _cpu.bf16_native():
        raise UsageError(
            "--precision bf16 needs a CPU with native bf16 matmul (avx512_bf16 or amx_bf16); this one has neither",
            hint="use --precision fp16 or fp32",
        )
    if precision == "fp16" and not _cpu.fp16_weights_fast():
        raise UsageError(
            "--precision fp16 needs fbgemm's fp16 matmul (a CPU with avx2, fma and f16c, and torch built with fbgemm)",
            hint="use --precision fp32",
        )
    return precision  # type: ignore[return-value]


# -- the weights at a precision ---------------------------------------------------------------


class DenseWeight:
    """A (in, out) fp32 matrix: ``mm(x) = x @ W``, ``addmm(r, x) = r + x @ W``."""

    __slots__ = ("weight",)

    def __init__(self, weight) -> None:
        self.weight = weight

    def mm(self, x):
        import torch

        return torch.mm(x, self.weight)

    def addmm(self, residual, x):
        import torch

        return torch.addmm(residual, x, self.weight)


class Bf16Weight:
    """A (in, out) bf16 matrix multiplied with fp32 activations rounded to bf16; fp32 out."""

    __slots__ = ("weight",)

    def __init__(self, weight) -> None:
        import torch

        self.weight = weight.to(torch.bfloat16)  # no copy when it already is (the fused layers' own, see _concat_linears)

    def mm(self, x):
        import torch

        return torch.mm(x.to(torch.bfloat16), self.weight).float()

    def addmm(self, residual, x):
        return self.mm(x).add_(residual)


@lru_cache(maxsize=1)
def _bf16_linear_class():
    """The stock layers' bf16 linear (a torch module, so built on first use: torch is imported lazily)."""
    import torch

    class Bf16Linear(torch.nn.Module):
        """A bias-free or biased Linear whose matmul runs in bf16 on fp32 inputs (fp32 out), as :class:`Bf16Weight`."""

        def __init__(self, linear) -> None:
            super().__init__()
            self.in_features, self.out_features = linear.in_features, linear.out_features
            self.weight = torch.nn.Parameter(linear.weight.detach().to(torch.bfloat16), requires_grad=False)
            self.bias = None if linear.bias is None else torch.nn.Parameter(linear.bias.detach().float(), requires_grad=False)

        def forward(self, x):
            out = torch.nn.functional.linear(x.to(torch.bfloat16), self.weight).to(x.dtype)
            return out if self.bias is None else out + self.bias

    return Bf16Linear


def bf16_stock(model) -> None:
    """Make the decoder's linear layers bf16 in place (the vocabulary projection stays fp32), as the fused ones.

    A linear whose weight is already bf16 (a view of a fused matrix) keeps it: no copy.
    """
    import torch

    linear_class = _bf16_linear_class()
    for parent in list(model.base_model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.Linear):
                setattr(parent, name, linear_class(child))


class Int8Weight:
    """A (in, out) matrix as torch's prepacked dynamic int8 linear (per output channel, symmetric)."""

    __slots__ = ("packed", "reduce_range")

    def __init__(self, weight) -> None:
        import torch

        _use_int8_engine()
        w = weight.detach().t().contiguous().float()  # (out, in), as the linear stores it
        self.packed = torch.ops.quantized.linear_prepack(_quantize_per_channel(w), None)
        self.reduce_range = True  # 7-bit activations, as torch's dynamic Linear computes (and overflow-safe in VNNI)

    def mm(self, x):
        import torch

        return torch.ops.quantized.linear_dynamic(x, self.packed, self.reduce_range)

    def addmm(self, residual, x):
        return self.mm(x).add_(residual)


#: Fewer rows than this go through fbgemm's fp16 matmul, more through MKL's fp32 one on the same
#: fp16-rounded weights (the same products, summed in fp32 either way). Measured (the four matmuls of
#: a layer, 2 threads, ``benchmarks/bench_matmul_kernels.py``): fbgemm 3.1-3.5x fp32 at 8 rows and
#: about 2x at 32-256, but 0.7x at a scoring pack's 768 rows on AVX-512 (issue 34).
FP16_FBGEMM_ROWS = 128


def round_to_fp16(weight):
    """``weight`` (fp32) rounded in place to the nearest fp16 value, kept fp32; returned."""
    import torch

    with torch.no_grad():
        return weight.copy_(weight.to(torch.float16))


class Fp16Weight:
    """A (in, out) matrix of fp16 values: fbgemm's packed fp16 matmul for a few rows, MKL's fp32 for many.

    ``weight`` is rounded to fp16 in place (the stock layers' views of it
    compute with the same fp16 values); fp32 activations, fp32 sums, fp32 out.
    With ``few_rows_only`` (the vocabulary projection of the decoding steps,
    a batch of rows at most) no fp32 copy is kept and ``weight`` is left as it is.
    """

    __slots__ = ("dense", "packed")

    def __init__(self, weight, *, few_rows_only: bool = False) -> None:
        import torch

        self.dense = None if few_rows_only else round_to_fp16(weight.detach())
        source = weight.detach() if self.dense is None else self.dense
        self.packed = torch.ops.quantized.linear_prepack_fp16(source.t().contiguous().float(), None)

    def mm(self, x):
        import torch

        if self.dense is not None and x.shape[0] >= FP16_FBGEMM_ROWS:
            return torch.mm(x, self.dense)
        return torch.ops.quantized.linear_dynamic_fp16(x, self.packed)

    def addmm(self, residual, x):
        import torch

        if self.dense is not None and x.shape[0] >= FP16_FBGEMM_ROWS:
            return torch.addmm(residual, x, self.dense)
        return self.mm(x).add_(residual)


Weight = DenseWeight | Bf16Weight | Fp16Weight | Int8Weight


def weight_for(weight, precision: Precision) -> Weight:
    """The fused layers' (in, out) matrix ``weight`` at ``precision``."""
    if precision == "int8":
        return Int8Weight(weight)
    if precision == "fp16":
        return Fp16Weight(weight)
    return Bf16Weight(weight) if precision == "bf16" else DenseWeight(weight)


def fp16_stock(model) -> None:
    """Round the decoder's linear weights to fp16 in place (the vocabulary projection stays fp32).

    Where the fused pass was built they are views of its matrices, already
    rounded (:class:`Fp16Weight`); the stock layers then multiply fp16 values
    in fp32, as the fused pass does for many rows.
    """
    import torch

    for module in model.base_model.modules():
        if isinstance(module, torch.nn.Linear):
            round_to_fp16(module.weight.data)


def quantize_stock(model) -> None:
    """Make the decoder's linear layers dynamic int8 in place (the vocabulary projection stays fp32).

    The same quantization as :class:`Int8Weight`: torch's per-channel dynamic
    qconfig, so the stock layers (the shared prefix's pass, models without the
    fused pass) and the fused ones compute with the same int8 weights.
    """
    import warnings

    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    _use_int8_engine()
    with warnings.catch_warnings():  # the same deprecation note as in _quantize_per_channel
        warnings.simplefilter("ignore", UserWarning)
        quantize_dynamic(model.base_model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)


def _quantize_per_channel(w):
    """``w`` (out, in) quantized as torch's per-channel dynamic qconfig quantizes a Linear's weight."""
    import warnings

    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig

    observer = per_channel_dynamic_qconfig.weight()
    observer(w)
    scale, zero_point = observer.calculate_qparams()
    with warnings.catch_warnings():  # torch 2.13 marks quantized tensors deprecated; its dynamic Linear uses them too
        warnings.simplefilter("ignore", UserWarning)
        return torch.quantize_per_channel(w, scale.float(), zero_point.long(), 0, torch.qint8)


def _use_int8_engine() -> str:
    """Switch torch's quantized engine to :data:`INT8_ENGINE` where it has one; the engine in use."""
    import torch

    if torch.backends.quantized.engine != INT8_ENGINE and INT8_ENGINE in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = INT8_ENGINE
    return str(torch.backends.quantized.engine)


__all__ = (
    "DEFAULT_PRECISION", "PRECISIONS", "Precision", "bf16_stock", "check_precision", "default_precision", "fp16_stock",
    "revision_with",
)
