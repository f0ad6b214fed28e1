"""Skinny-matmul microbenchmark (GPU): cuBLAS (F.linear) vs our Triton GEMV at decode shapes.

A decode step at batch 1 streams every weight once, so the figure of merit is weight bytes / time
against HBM bandwidth. Timing mirrors a model step: the op runs inside a CUDA graph over enough
distinct weight copies (>= 256 MB) that L2 never holds the next one, and time per op is the graph
replay time / copies, median of several replays.

    PYTHONPATH=. python benchmarks/kernels/bench_gemv.py --out benchmarks/results/gemv_<device>_<date>.json
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
from typing import Callable, Dict, List

import torch
import torch.nn.functional as F

from sglang.benchmark.result_file import result_header, write_result
from sglang.kernels.gemv import gemv

SHAPES = {  # name: (N, K)
    "8b.qkv": (6144, 4096), "8b.o": (4096, 4096), "8b.gate_up": (28672, 4096), "8b.down": (4096, 14336),
    "8b.lm_head": (128256, 4096),
    "1b.qkv": (3072, 2048), "1b.o": (2048, 2048), "1b.gate_up": (16384, 2048), "1b.down": (2048, 8192),
    "0.5b.qkv": (1152, 896), "0.5b.gate_up": (9728, 896), "0.5b.down": (896, 4864),
}
CONFIGS = [dict(block_n=bn, block_k=bk, num_warps=w, num_stages=s)
           for bn, bk, w, s in itertools.product((4, 8, 16), (256, 512), (4, 8), (2, 4))]


def graph_us(op: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
             weights: List[torch.Tensor], replays: int = 10) -> float:
    for w in weights[:2]:
        op(x, w)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for w in weights:
            op(x, w)
    times = []
    for _ in range(replays):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / len(weights))
    return statistics.median(times)


def bench_shape(name: str, n: int, k: int, m: int, peak_gbps: float) -> Dict:
    nbytes = n * k * 2
    copies = max(2, math.ceil((256 << 20) / nbytes))
    weights = [torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.02 for _ in range(copies)]
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    ref = F.linear(x.float(), weights[0].float())
    err = ((gemv(x, weights[0]).float() - ref).abs().max() / ref.abs().max()).item()
    cublas = graph_us(lambda a, w: F.linear(a, w), x, weights)
    best = None
    for cfg in CONFIGS:
        us = graph_us(lambda a, w, c=cfg: gemv(a, w, **c), x, weights, replays=5)
        if best is None or us < best[0]:
            best = (us, cfg)
    del weights
    torch.cuda.empty_cache()
    gbps = lambda us: round(nbytes / (us * 1e-6) / 1e9, 1)  # noqa: E731
    return {"shape": name, "m": m, "n": n, "k": k, "weight_mb": round(nbytes / 1e6, 1),
            "cublas_us": round(cublas, 2), "cublas_gbps": gbps(cublas),
            "triton_us": round(best[0], 2), "triton_gbps": gbps(best[0]), "triton_config": best[1],
            "triton_vs_cublas": round(cublas / best[0], 3), "floor_us": round(nbytes / (peak_gbps * 1e3), 2),
            "max_rel_err": round(err, 5)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES))
    parser.add_argument("--peak-gbps", type=float, default=4800.0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rows = []
    for m in args.rows:
        for name in args.shapes:
            row = bench_shape(name, *SHAPES[name], m, args.peak_gbps)
            print(row, flush=True)
            rows.append(row)
    write_result({**result_header("benchmarks/kernels/bench_gemv.py", "cuda"), "results": rows}, args.out)


if __name__ == "__main__":
    main()
