"""Skinny-matmul microbenchmark (GPU): cuBLAS (F.linear) vs a candidate Triton GEMV at decode shapes.

A decode step at batch 1 streams every weight once, so the figure of merit is weight bytes / time
against HBM bandwidth. Timing mirrors a model step: the op runs inside a CUDA graph over enough
distinct weight copies (>= 256 MB) that L2 never holds the next one, and time per op is the graph
replay time / copies, median of several replays.

    PYTHONPATH=. python benchmarks/kernels/bench_gemv.py --out benchmarks/results/gemv_<device>_<date>.json

The candidate (`gemv` below) lives here, not in `sglang.kernels`: measured on an H200 it matched
cuBLAS inside a real decode step at one row and lost at 2-4 rows (see
benchmarks/results/gpu_decode_h200_2026-12-01_s4.json), so the runtime keeps F.linear. Each
program owns BLOCK_N output features, walks K in BLOCK_K chunks and keeps an elementwise float32
accumulator reduced once at the end; all M <= MAX_ROWS rows share each weight tile it loads.
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from sglang.benchmark.result_file import result_header, write_result

MAX_ROWS = 4


@triton.jit
def _gemv_kernel(X, W, B, Y, N, K, stride_xm, stride_wn, stride_ym,
                 M: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    pid = tl.program_id(0)
    offs_n = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    n_mask = offs_n < N
    offs_k = tl.arange(0, BLOCK_K)
    w_rows = W + offs_n.to(tl.int64)[:, None] * stride_wn
    acc0 = tl.zeros([BLOCK_N, BLOCK_K], dtype=tl.float32)
    acc1 = tl.zeros([BLOCK_N, BLOCK_K], dtype=tl.float32)
    acc2 = tl.zeros([BLOCK_N, BLOCK_K], dtype=tl.float32)
    acc3 = tl.zeros([BLOCK_N, BLOCK_K], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        k = k0 + offs_k
        k_mask = k < K
        w = tl.load(w_rows + k[None, :], mask=n_mask[:, None] & k_mask[None, :], other=0.0).to(tl.float32)
        acc0 += w * tl.load(X + k, mask=k_mask, other=0.0).to(tl.float32)[None, :]
        if M > 1:
            acc1 += w * tl.load(X + stride_xm + k, mask=k_mask, other=0.0).to(tl.float32)[None, :]
        if M > 2:
            acc2 += w * tl.load(X + 2 * stride_xm + k, mask=k_mask, other=0.0).to(tl.float32)[None, :]
        if M > 3:
            acc3 += w * tl.load(X + 3 * stride_xm + k, mask=k_mask, other=0.0).to(tl.float32)[None, :]
    bias = tl.zeros([BLOCK_N], dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(B + offs_n, mask=n_mask, other=0.0).to(tl.float32)
    out_ty = Y.dtype.element_ty
    tl.store(Y + offs_n, (tl.sum(acc0, 1) + bias).to(out_ty), mask=n_mask)
    if M > 1:
        tl.store(Y + stride_ym + offs_n, (tl.sum(acc1, 1) + bias).to(out_ty), mask=n_mask)
    if M > 2:
        tl.store(Y + 2 * stride_ym + offs_n, (tl.sum(acc2, 1) + bias).to(out_ty), mask=n_mask)
    if M > 3:
        tl.store(Y + 3 * stride_ym + offs_n, (tl.sum(acc3, 1) + bias).to(out_ty), mask=n_mask)


def gemv(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
         block_n: int = 8, block_k: int = 512, num_warps: int = 4, num_stages: int = 3) -> torch.Tensor:
    """x [M, K] (M <= MAX_ROWS, last dim contiguous) @ weight[N, K]^T (+ bias) -> [M, N] in x.dtype."""
    if x.dim() != 2 or x.shape[0] > MAX_ROWS or x.shape[1] != weight.shape[1]:
        raise ValueError(f"gemv takes x [M <= {MAX_ROWS}, K] and weight [N, K], got {list(x.shape)} and {list(weight.shape)}")
    if x.stride(1) != 1 or weight.stride(1) != 1:
        raise ValueError("gemv needs x and weight contiguous in their last dim")
    m, k = x.shape
    n = weight.shape[0]
    y = torch.empty(m, n, dtype=x.dtype, device=x.device)
    if m == 0:
        return y
    _gemv_kernel[(triton.cdiv(n, block_n),)](
        x, weight, bias if bias is not None else weight, y, n, k, x.stride(0), weight.stride(0), y.stride(0),
        M=m, HAS_BIAS=bias is not None, BLOCK_N=block_n, BLOCK_K=block_k, num_warps=num_warps, num_stages=num_stages,
    )
    return y


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
