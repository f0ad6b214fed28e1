"""INT4 weight-only GEMM: y = x @ dequant(W)^T (+ bias), dequantizing tiles of W in registers.

W is in the quantization package's INT4 layout (`runtime/layers/quantization/int4_math.py`):
qweight uint8 [N, ceil(K/2)] (input k in the low nibble when even), scales float32 [N, G],
zeros uint8 [N, G], g_idx int32 [K] (the group of each input; act-order maps included, so the
group of each k is gathered rather than computed). The torch twin is `int4_linear_twin` there.

Each program owns a BLOCK_M x BLOCK_N tile of y and walks K in BLOCK_K chunks: it loads the
packed bytes of its rows, picks each k's nibble, subtracts the zero and multiplies the scale of
k's group, rounds the tile to x's dtype (as the twin's dequantized weight is) and accumulates
x @ tile^T in float32. Correctness first: the gathers per element cost bandwidth a tuned
kernel for group-ordered weights would avoid.
"""

from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl


@triton.jit
def _int4_gemm_kernel(X, Q, S, Z, G, Bias, Y, M, N, K, NG, stride_xm, stride_qn, stride_ym,
                      HAS_BIAS: tl.constexpr, IEEE: tl.constexpr,
                      BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    pid_m, pid_n = tl.program_id(0), tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    m_mask, n_mask = offs_m < M, offs_n < N
    rows_n = offs_n.to(tl.int64)
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        k_mask = k < K
        x = tl.load(X + offs_m.to(tl.int64)[:, None] * stride_xm + k[None, :],
                    mask=m_mask[:, None] & k_mask[None, :], other=0.0)
        wn_mask = n_mask[:, None] & k_mask[None, :]
        byte = tl.load(Q + rows_n[:, None] * stride_qn + (k // 2)[None, :], mask=wn_mask, other=0).to(tl.int32)
        q = (byte >> ((k % 2) * 4)[None, :]) & 0xF
        grp = tl.load(G + k, mask=k_mask, other=0)
        z = tl.load(Z + rows_n[:, None] * NG + grp[None, :], mask=wn_mask, other=0).to(tl.float32)
        s = tl.load(S + rows_n[:, None] * NG + grp[None, :], mask=wn_mask, other=0.0)
        w = ((q.to(tl.float32) - z) * s).to(X.dtype.element_ty)
        if IEEE:
            acc += tl.dot(x, tl.trans(w), input_precision="ieee")
        else:
            acc += tl.dot(x, tl.trans(w))
    if HAS_BIAS:
        acc += tl.load(Bias + offs_n, mask=n_mask, other=0.0).to(tl.float32)[None, :]
    tl.store(Y + offs_m.to(tl.int64)[:, None] * stride_ym + offs_n[None, :], acc.to(Y.dtype.element_ty),
             mask=m_mask[:, None] & n_mask[None, :])


def int4_linear(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor,
                g_idx: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """x [..., K] (CUDA, float32/bfloat16/float16) -> [..., N] in x's dtype."""
    k, n = g_idx.shape[0], qweight.shape[0]
    x2 = x.reshape(-1, k).contiguous()
    m = x2.shape[0]
    y = torch.empty(m, n, device=x.device, dtype=x.dtype)
    if m == 0:
        return y.reshape(*x.shape[:-1], n)
    block_m = 16 if m <= 16 else 64
    grid = (triton.cdiv(m, block_m), triton.cdiv(n, 64))
    _int4_gemm_kernel[grid](
        x2, qweight, scales.contiguous(), zeros.contiguous(), g_idx.contiguous(),
        bias if bias is not None else y, y, m, n, k, scales.shape[1], x2.stride(0), qweight.stride(0), y.stride(0),
        HAS_BIAS=bias is not None, IEEE=x.dtype == torch.float32, BLOCK_M=block_m, BLOCK_N=64, BLOCK_K=32)
    return y.reshape(*x.shape[:-1], n)
