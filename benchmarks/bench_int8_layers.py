"""Which int8 keeps the answers: argmax agreement with fp32, per activation scheme and layer type (issue 34).

Run: python benchmarks/bench_int8_layers.py [--n 20] [--variants "tensor:;tok:;tok:down_proj"]

An exploration, not a shipped path: the embedded model's stock layers (the
fused pass off) at fp32 score the first ``--n`` test questions of
arc_challenge, medmcqa and pubmedqa (logprob mode, as ``bench_precision.py``);
then each variant replaces the decoder's linear layers with torch's dynamic
int8 linear (weights per output channel, ``x86`` engine, 7-bit activations)
and scores them again. A variant is ``SCHEME:KEPT``: ``tensor`` quantizes
each pass's activations with one scale (what ``--precision int8`` ships),
``tok`` with one scale per token (each row divided by its largest magnitude
before the int8 linear, multiplied back after: the same kernel); ``KEPT``
lists the layer names left in fp32 (``down_proj``, ``o_proj``, ...). Prints
each task's agreement and each variant's scoring seconds (the stock layers,
not the fused pass: compare the seconds within one run only).
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


def int8_linear(linear, per_token: bool):
    """``linear`` as torch's dynamic int8 linear, its activations quantized per pass or per token."""
    import torch

    class Int8Linear(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            w = linear.weight.detach().float()
            scale = w.abs().amax(1).clamp(min=1e-12) / 127
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                qw = torch.quantize_per_channel(w, scale.double(), torch.zeros(w.shape[0], dtype=torch.long), 0, torch.qint8)
            self.packed = torch.ops.quantized.linear_prepack(qw, None)

        def forward(self, x):
            rows = x.reshape(-1, x.shape[-1])
            if per_token:
                top = rows.abs().amax(1, keepdim=True).clamp(min=1e-12)
                out = torch.ops.quantized.linear_dynamic(rows / top, self.packed, True) * top
            else:
                out = torch.ops.quantized.linear_dynamic(rows, self.packed, True)
            return out.reshape(*x.shape[:-1], -1)

    return Int8Linear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--variants", default="tensor:;tok:;tok:down_proj;tok:down_proj,o_proj")
    args = parser.parse_args()

    import torch
    from bench_precision import argmax, cpu_flags, option_requests

    from tprompt.models import get_model

    torch.backends.quantized.engine = "x86"
    engine = get_model("smollm2").backend().engine  # type: ignore[attr-defined]
    engine.fused = None  # the stock layers, whose linears each variant replaces
    tasks = {t: option_requests(t, args.n) for t in ("arc_challenge", "medmcqa", "pubmedqa")}
    print(f"SmolLM2-135M-Instruct, {cpu_flags()}; 1-min load average {os.getloadavg()[0]:.2f}; {args.n} questions per task")
    t0 = time.perf_counter()
    ref = {t: [p for p, _ in engine.option_probs(r)] for t, r in tasks.items()}
    print(f"  fp32: {time.perf_counter() - t0:.1f} s", flush=True)
    linears = [(parent, name, child) for parent in list(engine.model.base_model.modules())
               for name, child in list(parent.named_children()) if isinstance(child, torch.nn.Linear)]
    for variant in args.variants.split(";"):
        scheme, _, kept = variant.partition(":")
        keep = set(kept.split(",")) - {""}
        for parent, name, child in linears:
            setattr(parent, name, child if name in keep else int8_linear(child, scheme == "tok"))
        t0 = time.perf_counter()
        got = {t: [p for p, _ in engine.option_probs(r)] for t, r in tasks.items()}
        agree = " / ".join(f"{t} {sum(argmax(a) == argmax(g) for a, g in zip(ref[t], got[t])) / len(ref[t]):.0%}" for t in tasks)
        print(f"  {scheme} activations, fp32 {', '.join(sorted(keep)) or 'none'}: {agree}; {time.perf_counter() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
