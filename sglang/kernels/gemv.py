"""Skinny matmul y = x W^T for a few rows of x (decode at small batch): a weight-streaming GEMV.

At batch 1 a decode step is a stream of the weights through the SMs; each program owns BLOCK_N
output features, walks K in BLOCK_K chunks and keeps an elementwise float32 accumulator that is
reduced once at the end (no per-chunk reductions). Rows of x are few (M <= MAX_ROWS), so each
program handles all of them and reads its weight tile once.
"""

from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

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
