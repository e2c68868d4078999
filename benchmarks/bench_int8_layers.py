"""Which int8 keeps the answers: argmax agreement with fp32 per weight/activation scheme and layer type (issue 34).

Run: python benchmarks/bench_int8_layers.py [--n 30] [--variants "tensor;tok;tok8;smooth58;wq;fp16;smooth58:down=fp16"]

An exploration, not a shipped path. The embedded model's fused scoring pass
at fp32 scores the first ``--n`` test questions of arc_challenge, medmcqa and
pubmedqa (logprob mode, as ``bench_precision.py``); then each variant
replaces the fused pass's four matmuls per layer (qkv, o, gate_up, down; the
shared prefix's pass stays fp32) and scores them again. A variant is
``KIND[:LAYER=KIND,...]``, the kinds:

* ``tensor``: torch's dynamic int8 linear (weights per output channel, ``x86``
  engine, 7-bit activations, one scale per pass): what ``--precision int8`` ships;
* ``tok`` / ``tok8``: the same kernel with one activation scale per token (each
  row divided by its largest magnitude before, multiplied back after), 7 / 8 bits;
* ``smoothA`` / ``smoothA8``: ``tok`` / ``tok8`` after SmoothQuant smoothing with
  alpha A/10 (each input channel divided by ``s = amax(x)^a / amax(W)^(1-a)``,
  the weight's rows multiplied by it), ``amax(x)`` calibrated on 8 train
  questions of each task (not the test ones);
* ``wq``: weight-only int8 per output channel, simulated exactly (the int8
  weights dequantized, fp32 matmul): what ``_weight_int8pack_mm`` computes;
* ``fp16``: fbgemm's packed fp16 weights, fp32 activations and sums (``--precision fp16``);
* ``fp32``: the layer left as it is.

Prints each task's agreement with fp32, the median option-probability
difference and each variant's scoring seconds (compare seconds within one run only).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

TASKS = ("arc_challenge", "medmcqa", "pubmedqa")
#: The fused layer tuple's matmul slots (see models/local/llama.py) and their names.
SLOTS = {2: "qkv", 3: "o", 6: "gate_up", 7: "down"}


class Recorder:
    """An fp32 matmul that records each input channel's largest magnitude (SmoothQuant's calibration)."""

    def __init__(self, key, weight, stats: dict) -> None:
        self.key, self.weight, self.stats = key, weight, stats

    def mm(self, x):
        import torch

        top = x.abs().amax(0)
        self.stats[self.key] = torch.maximum(self.stats[self.key], top) if self.key in self.stats else top
        return torch.mm(x, self.weight)

    def addmm(self, residual, x):
        return self.mm(x).add_(residual)


class TokenInt8:
    """torch's dynamic int8 linear, activations per pass or per token, optionally smoothed by ``s`` per input channel."""

    def __init__(self, weight, smooth=None, reduce_range: bool = True, per_token: bool = True) -> None:
        import torch

        self.inv = None if smooth is None else 1.0 / smooth
        w = (weight if smooth is None else weight * smooth[:, None]).t().contiguous()  # (out, in)
        scale = (w.abs().amax(1).clamp(min=1e-12) / 127).double()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            q = torch.quantize_per_channel(w, scale, torch.zeros(w.shape[0], dtype=torch.long), 0, torch.qint8)
        self.packed = torch.ops.quantized.linear_prepack(q, None)
        self.reduce_range, self.per_token = reduce_range, per_token

    def mm(self, x):
        import torch

        if self.inv is not None:
            x = x * self.inv
        if not self.per_token:
            return torch.ops.quantized.linear_dynamic(x, self.packed, self.reduce_range)
        top = x.abs().amax(1, keepdim=True).clamp(min=1e-12)
        return torch.ops.quantized.linear_dynamic(x / top, self.packed, self.reduce_range).mul_(top)

    def addmm(self, residual, x):
        return self.mm(x).add_(residual)


def layer_weight(kind: str, weight, act_max):
    """The matmul ``kind`` (see the module doc) of the (in, out) fp32 ``weight``."""
    import torch

    from tprompt.models.local.precision import DenseWeight, Fp16Weight

    if kind == "fp16":
        return Fp16Weight(weight)
    if kind == "wq":
        scale = weight.abs().amax(0, keepdim=True) / 127
        return DenseWeight((torch.round(weight / scale).clamp(-127, 127) * scale).contiguous())
    if kind in ("tensor", "tok", "tok8"):
        return TokenInt8(weight, reduce_range=kind != "tok8", per_token=kind != "tensor")
    if kind.startswith("smooth"):
        alpha = int(kind[6:].rstrip("8") or 5) / 10
        smooth = act_max.clamp(min=1e-5).pow(alpha) / weight.abs().amax(1).clamp(min=1e-5).pow(1 - alpha)
        return TokenInt8(weight, smooth.clamp(min=1e-5), reduce_range=not kind.endswith("8"))
    raise SystemExit(f"unknown kind {kind!r} (see the module doc)")


def build(variant: str, fp32_layers: list, stats: dict) -> list:
    base, _, over = variant.partition(":")
    overrides = dict(o.split("=") for o in over.split(",") if o)
    layers = []
    for i, layer in enumerate(fp32_layers):
        layer = list(layer)
        for slot, name in SLOTS.items():
            kind = overrides.get(name, base)
            if kind != "fp32":
                layer[slot] = layer_weight(kind, fp32_layers[i][slot].weight, stats[(i, slot)])
        layers.append(tuple(layer))
    return layers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--variants", default="tensor;tok;tok8;smooth58;wq;fp16;smooth58:down=fp16")
    args = parser.parse_args()

    import torch
    from bench_precision import PROMPT, argmax, cpu_flags, option_requests

    from tprompt.evaluator.scoring import _messages, _options
    from tprompt.evaluator.tasks import load_task
    from tprompt.models import OptionsRequest, get_model

    torch.backends.quantized.engine = "x86"
    engine = get_model("smollm2").backend().engine  # type: ignore[attr-defined]
    fused = engine.fused
    fp32_layers = list(fused.layers)
    tasks = {t: option_requests(t, args.n) for t in TASKS}
    calibration = [OptionsRequest(messages=_messages(PROMPT, ex, task, True), options=_options(ex, task))
                   for task in map(load_task, TASKS) for ex in task.train[:8]]
    stats: dict = {}
    fused.layers = [tuple(Recorder((i, s), w, stats) if s in SLOTS else w for s, w in enumerate(layer))
                    for i, layer in enumerate(fp32_layers)]
    engine.option_probs(calibration)
    fused.layers = fp32_layers
    print(f"SmolLM2-135M-Instruct, {cpu_flags()}; 1-min load average {os.getloadavg()[0]:.2f}; "
          f"{args.n} questions per task; calibrated on {len(calibration)} train questions", flush=True)
    t0 = time.perf_counter()
    ref = {t: [p for p, _ in engine.option_probs(r)] for t, r in tasks.items()}
    print(f"  fp32: {time.perf_counter() - t0:.1f} s", flush=True)
    for variant in args.variants.split(";"):
        fused.layers = build(variant, fp32_layers, stats)
        t0 = time.perf_counter()
        got = {t: [p for p, _ in engine.option_probs(r)] for t, r in tasks.items()}
        seconds = time.perf_counter() - t0
        agree = " / ".join(f"{t} {sum(argmax(a) == argmax(g) for a, g in zip(ref[t], got[t])) / len(ref[t]):.0%}" for t in tasks)
        diffs = sorted(abs(x - y) for t in tasks for a, g in zip(ref[t], got[t]) for x, y in zip(a, g))
        print(f"  {variant}: {agree}; median probability difference {diffs[len(diffs) // 2]:.4f}; {seconds:.1f} s "
              f"(load {os.getloadavg()[0]:.1f})", flush=True)
    fused.layers = fp32_layers


if __name__ == "__main__":
    main()
