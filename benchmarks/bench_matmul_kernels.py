"""The matmul kernels behind the precisions, and the others tried for scoring on AVX2 (issue 34).

Run: python benchmarks/bench_matmul_kernels.py [--rows 768,256,32,8] [--threads N] [--cpu-time]
     [--repeat N]
As an AVX2-only CPU on an AVX-512 one: ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
     FBGEMM_ENABLE_INSTRUCTIONS=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 python benchmarks/bench_matmul_kernels.py

The four matmuls of one SmolLM2-135M layer (q/k/v, o, gate/up, down) on random
weights, at each row count (768: a scoring pack; 8-32: decoding steps), the
kernels interleaved; printed per kernel the min and the median milliseconds of
the four together, and the ratio of fp32's min to each. Kernels: fp32 (MKL's
``torch.mm``), ``--precision fp16``'s (fbgemm below 128 rows, MKL above), fbgemm's
fp16 matmul for every row count and blocked in 256 rows, MKL's packed fp32
(``torch.ops.mkl._mkl_linear``), oneDNN's fp32 and bf16 linear on packed weights
(``torch.ops.mkldnn._linear_pointwise``; oneDNN refuses bf16 on a CPU without
avx512bw or avx_ne_convert), and dynamic int8. ``--cpu-time`` times the process's
CPU time instead of the wall clock: with ``--threads 1`` that is what a kernel costs
a core whatever the machine's load (a shared machine's wall times swing 2-3x).
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

#: (in, out) of the fused matmuls of one SmolLM2-135M layer.
SHAPES = [(576, 960), (576, 576), (576, 3072), (1536, 576)]


def kernels_for(weights, rows: int) -> dict:
    """Each kernel's four matmuls (``x -> x @ W``) for ``rows`` rows; one that this CPU or torch lacks is left out."""
    import torch

    from tprompt.models.local.precision import Fp16Weight, Int8Weight

    def fbgemm(w, block=None):
        packed = torch.ops.quantized.linear_prepack_fp16(w.t().contiguous(), None)
        if block is None:
            return lambda x: torch.ops.quantized.linear_dynamic_fp16(x, packed)
        return lambda x: torch.cat([torch.ops.quantized.linear_dynamic_fp16(x[i:i + block], packed)
                                    for i in range(0, x.shape[0], block)])

    def mkl_packed(w):
        wt = w.t().contiguous()
        packed = torch.ops.mkl._mkl_reorder_linear_weight(wt, rows)
        return lambda x: torch.ops.mkl._mkl_linear(x, packed, wt, None, rows)

    def onednn(w, dtype):
        packed = torch.ops.mkldnn._reorder_linear_weight(w.t().contiguous().to(dtype), rows)
        return lambda x: torch.ops.mkldnn._linear_pointwise(x.to(dtype), packed, None, "none", [], "").float()

    makers = {
        "fp32": lambda w: (lambda x: torch.mm(x, w)),
        "fp16 (as shipped)": lambda w: Fp16Weight(w.clone()).mm,
        "fbgemm fp16, all rows": fbgemm,
        "fbgemm fp16 /256 rows": lambda w: fbgemm(w, 256),
        "MKL packed fp32": mkl_packed,
        "oneDNN fp32": lambda w: onednn(w, torch.float32),
        "oneDNN bf16": lambda w: onednn(w, torch.bfloat16),
        "dynamic int8": lambda w: Int8Weight(w).mm,
    }
    kernels = {}
    for name, make in makers.items():
        try:
            mms = [make(w) for w in weights]
            mms[0](torch.randn(rows, SHAPES[0][0]))
        except RuntimeError as e:
            print(f"  {name}: not available here ({str(e).splitlines()[0][:120]})")
            continue
        kernels[name] = mms
    return kernels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="768,256,32,8")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--cpu-time", action="store_true", help="time CPU seconds, not the wall clock")
    parser.add_argument("--repeat", type=int, help="timed rounds (default 6 at 256 rows or more, else 40)")
    args = parser.parse_args()

    import torch
    from bench_precision import cpu_flags

    warnings.simplefilter("ignore", UserWarning)
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.process_time if args.cpu_time else time.perf_counter
    print(f"{cpu_flags()}; {torch.get_num_threads()} threads; {'CPU' if args.cpu_time else 'wall'} time; "
          f"1-min load average {os.getloadavg()[0]:.2f}", flush=True)
    torch.manual_seed(0)
    weights = [torch.randn(k, n) * 0.05 for k, n in SHAPES]
    for rows in (int(r) for r in args.rows.split(",")):
        kernels = kernels_for(weights, rows)
        inputs = [torch.randn(rows, k) for k, _ in SHAPES]
        times: dict[str, list[float]] = {name: [] for name in kernels}
        for _ in range(args.repeat or (6 if rows >= 256 else 40)):
            for name, mms in kernels.items():  # interleaved
                t0 = clock()
                for mm, x in zip(mms, inputs):
                    mm(x)
                times[name].append(clock() - t0)
        fp32_min = min(times["fp32"])
        print(f"  {rows} rows (load {os.getloadavg()[0]:.2f}):", flush=True)
        for name, ts in times.items():
            ts.sort()
            print(f"    {name:22} {ts[0] * 1e3:8.2f} ms (median {ts[len(ts) // 2] * 1e3:.2f}, {fp32_min / ts[0]:.2f}x fp32)",
                  flush=True)


if __name__ == "__main__":
    main()
