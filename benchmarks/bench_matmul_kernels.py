"""The matmul kernels behind the precisions: fp32 (MKL), fp16 weights and dynamic int8 (fbgemm) (issue 34).

Run: python benchmarks/bench_matmul_kernels.py [--rows 768,256,32,8]
As an AVX2-only CPU on an AVX-512 one: ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
     FBGEMM_ENABLE_INSTRUCTIONS=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 python benchmarks/bench_matmul_kernels.py

The four matmuls of one SmolLM2-135M layer (q/k/v, o, gate/up, down) on random
weights, at each row count (768: a scoring pack; 8-32: decoding steps), the
kernels interleaved; printed per kernel the min and the median milliseconds of
the four together, and the ratio of fp32's min to each. On a shared machine
read the mins: the medians at few rows swing with the load.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="768,256,32,8")
    args = parser.parse_args()

    import torch
    from bench_precision import cpu_flags

    from tprompt.models.local.precision import Fp16Weight, Int8Weight

    warnings.simplefilter("ignore", UserWarning)
    print(f"{cpu_flags()}; {torch.get_num_threads()} threads; 1-min load average {os.getloadavg()[0]:.2f}", flush=True)
    torch.manual_seed(0)
    weights = [torch.randn(k, n) * 0.05 for k, n in SHAPES]
    kernels = {
        "fp32": [lambda x, w=w: torch.mm(x, w) for w in weights],
        "fp16 weights": [lambda x, f=Fp16Weight(w): f.mm(x) for w in weights],
        "dynamic int8": [lambda x, q=Int8Weight(w): q.mm(x) for w in weights],
    }
    for rows in (int(r) for r in args.rows.split(",")):
        inputs = [torch.randn(rows, k) for k, _ in SHAPES]
        times: dict[str, list[float]] = {name: [] for name in kernels}
        for _ in range(6 if rows >= 256 else 40):
            for name, mms in kernels.items():  # interleaved
                t0 = time.perf_counter()
                for mm, x in zip(mms, inputs):
                    mm(x)
                times[name].append(time.perf_counter() - t0)
        fp32_min = min(times["fp32"])
        cells = []
        for name, ts in times.items():
            ts.sort()
            cells.append(f"{name} {ts[0] * 1e3:.2f} ms (median {ts[len(ts) // 2] * 1e3:.2f}, {fp32_min / ts[0]:.2f}x fp32)")
        print(f"  {rows} rows: " + "; ".join(cells), flush=True)


if __name__ == "__main__":
    main()
