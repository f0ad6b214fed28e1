"""MoE experts microbenchmark (GPU): the Triton grouped GEMMs (`sglang.kernels.fused_moe`) vs the
torch twin (one GEMM pair per expert) on one layer of a real shape, random weights.

Figure of merit at decode: bytes of the experts the batch activates (each active expert's w13
and w2, read once) / time, against HBM bandwidth. Time: CUDA events over repeated calls, median.

    PYTHONPATH=. python benchmarks/kernels/bench_fused_moe.py --shape mixtral-8x7b \
        --out benchmarks/results/fused_moe_<device>_<date>.json
"""

from __future__ import annotations

import argparse
import statistics
from typing import Dict, List

import torch

from sglang.benchmark.card_limits import card_limits
from sglang.benchmark.result_file import result_header, write_result
from sglang.kernels.fused_moe import fused_experts
from sglang.runtime.layers.activation import silu_and_mul_ref
from sglang.runtime.layers.moe.experts_torch import fused_experts_torch
from sglang.runtime.layers.moe.router import RouterConfig, select_experts

# (BLOCK_N, BLOCK_K, num_warps, num_stages) tried by --sweep
SWEEP = [(64, 64, 4, 2), (32, 64, 4, 3), (32, 128, 4, 3), (64, 128, 4, 3), (128, 64, 4, 3), (64, 64, 4, 4),
         (128, 128, 8, 3), (16, 256, 4, 3)]
# (experts, top_k, hidden, moe intermediate)
SHAPES = {"mixtral-8x7b": (8, 2, 4096, 14336), "qwen3-30b-a3b": (128, 8, 2048, 768),
          "deepseek-v2-lite": (64, 6, 2048, 1408)}


def _time(fn, iters: int) -> float:
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def bench(shape: str, batch: int, iters: int, do_sweep: bool = False) -> Dict[str, float]:
    experts, k, hidden, inter = SHAPES[shape]
    dtype = torch.bfloat16
    x = torch.randn(batch, hidden, device="cuda", dtype=dtype)
    w13 = torch.randn(experts, 2 * inter, hidden, device="cuda", dtype=dtype) * hidden**-0.5
    w2 = torch.randn(experts, hidden, inter, device="cuda", dtype=dtype) * inter**-0.5
    weights, ids = select_experts(torch.randn(batch, experts, device="cuda"), RouterConfig(k))
    active = int(torch.unique(ids).numel())
    active_bytes = active * 3 * hidden * inter * 2
    t_triton = _time(lambda: fused_experts(x, w13, w2, weights, ids), iters)
    sweep = {}
    for cfg in SWEEP if do_sweep else ():
        try:
            sweep["x".join(map(str, cfg))] = round(_time(lambda: fused_experts(x, w13, w2, weights, ids, cfg), iters) * 1e6, 1)
        except Exception as e:  # a tile that does not fit shared memory
            sweep["x".join(map(str, cfg))] = type(e).__name__
    t_torch = _time(lambda: fused_experts_torch(x, w13, w2, weights, ids, silu_and_mul_ref), iters)
    return {"shape": shape, "batch": batch, "active_experts": active, "active_expert_mb": active_bytes / 2**20,
            "triton_us": t_triton * 1e6, "torch_twin_us": t_torch * 1e6,
            "triton_gb_s": active_bytes / t_triton / 1e9, "torch_twin_gb_s": active_bytes / t_torch / 1e9,
            **({"sweep_us (BLOCK_N x BLOCK_K x warps x stages)": sweep} if sweep else {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), action="append")
    parser.add_argument("--batch", type=int, action="append", help="tokens per call (repeatable)")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--out", help="write a result file here")
    parser.add_argument("--sweep", action="store_true", help="also time the tile configurations in SWEEP")
    args = parser.parse_args()
    rows: List[Dict[str, float]] = []
    for shape in args.shape or ["mixtral-8x7b"]:
        for batch in args.batch or [1, 16, 64, 512]:
            rows.append(bench(shape, batch, args.iters, args.sweep))
            print(rows[-1], flush=True)
    write_result({**result_header("benchmarks/kernels/bench_fused_moe.py", "cuda"), "card": card_limits(), "rows": rows},
                 args.out)


if __name__ == "__main__":
    main()
