"""FP8 W8A8 products for few rows (decode), and the per-token activation quantizer in one pass.

`fp8_gemv`: y[m] = (x[m] rounded to FP8) @ W^T with W float8_e4m3fn [N, K] and its stored scales
(`runtime/layers/quantization/fp8_math.py`: per row [N, 1], or per row and column block
[N, ceil(K / block_k)]). It computes what the W8A8 GEMM computes (activations rounded to FP8
with a dynamic per-token scale, a per-token-per-block scale for block-wise weights, or the
static input scale; products accumulated in float32), but streams the weight the way a GEMV
does: at one to a few rows `torch._scaled_mm` pads M to a tile and reads FP8 weights slower than
cuBLAS reads bf16 ones, which made FP8 decode slower than bf16 (benchmarks/results/
gpu_quant_h100_2026-12-07_run1.json). Each program owns BLOCK_N features of one row m; the grid
walks m fastest so the programs sharing a weight block run together and re-read it from L2.
Twin: `fp8_linear_twin`.

`quantize_rows_fp8`: x [M, K] -> (fp8 [M, K], scale float32 [M, 1]) as `quantize_rows` does,
one program per row (the torch form is eight elementwise and reduction launches).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

FP8_MAX = 448.0
MIN_SCALE = 1e-12
MAX_GEMV_ROWS = 4  # above this, _scaled_mm's tiles amortise the weight read


@triton.jit
def _round_fp8(x, scale):
    return tl.clamp(x / scale, -448.0, 448.0).to(tl.float8e4nv).to(tl.float32)


@triton.jit
def _fp8_gemv_kernel(X, W, WS, XS, Bias, Y, N, K, KB, stride_xm, stride_wn, stride_ym,
                     BLOCKWISE: tl.constexpr, STATIC: tl.constexpr, HAS_BIAS: tl.constexpr,
                     BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    m, pid_n = tl.program_id(0), tl.program_id(1)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_mask = offs_n < N
    offs_k = tl.arange(0, BLOCK_K)
    x_row = X + m.to(tl.int64) * stride_xm
    w_rows = W + offs_n.to(tl.int64)[:, None] * stride_wn
    if STATIC:
        x_scale = tl.load(XS).to(tl.float32)
    elif not BLOCKWISE:  # the row's dynamic scale first (x is one row: this pass reads L2)
        amax = tl.zeros([BLOCK_K], dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            xk = tl.load(x_row + k0 + offs_k, mask=k0 + offs_k < K, other=0.0).to(tl.float32)
            amax = tl.maximum(amax, tl.abs(xk))
        x_scale = tl.maximum(tl.max(amax, 0) / 448.0, 1e-12)
    acc = tl.zeros([BLOCK_N, BLOCK_K], dtype=tl.float32)
    out = tl.zeros([BLOCK_N], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        k = k0 + offs_k
        k_mask = k < K
        xk = tl.load(x_row + k, mask=k_mask, other=0.0).to(tl.float32)
        w = tl.load(w_rows + k[None, :], mask=n_mask[:, None] & k_mask[None, :], other=0.0).to(tl.float32)
        if BLOCKWISE:  # BLOCK_K is the weight's block: one activation and one weight scale per chunk
            block_scale = tl.maximum(tl.max(tl.abs(xk), 0) / 448.0, 1e-12)
            if STATIC:
                block_scale = x_scale
            part = tl.sum(w * _round_fp8(xk, block_scale)[None, :], 1)
            w_scale = tl.load(WS + offs_n * KB + k0 // BLOCK_K, mask=n_mask, other=0.0)
            out += part * w_scale * block_scale
        else:
            acc += w * _round_fp8(xk, x_scale)[None, :]
    if not BLOCKWISE:
        out = tl.sum(acc, 1) * x_scale * tl.load(WS + offs_n * KB, mask=n_mask, other=0.0)
    if HAS_BIAS:
        out += tl.load(Bias + offs_n, mask=n_mask, other=0.0).to(tl.float32)
    tl.store(Y + m.to(tl.int64) * stride_ym + offs_n, out.to(Y.dtype.element_ty), mask=n_mask)


def _block_config(n: int) -> Tuple[int, int, int]:
    """(BLOCK_N, BLOCK_K, num_warps): the bf16 GEMV's measured shapes (sglang/kernels/gemv.py) at
    the same bytes per program, FP8 being half as wide."""
    if n >= 6144:
        return 16, 512, 4
    return 8, 1024, 8


def fp8_gemv(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor, block_k: Optional[int],
             static_scale: Optional[torch.Tensor], bias: Optional[torch.Tensor]) -> torch.Tensor:
    """x [..., K] (at most MAX_GEMV_ROWS rows; CUDA) -> [..., N] in x's dtype."""
    k_in, n = x.shape[-1], weight.shape[0]
    x2 = x.reshape(-1, k_in)
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    m = x2.shape[0]
    y = torch.empty(m, n, device=x.device, dtype=x.dtype)
    block_n, bk, warps = _block_config(n)
    if block_k is not None:
        if block_k & (block_k - 1):
            raise ValueError(f"fp8_gemv needs a power-of-two weight block, got {block_k}")
        bk = block_k
    scale = scale.reshape(n, -1)
    _fp8_gemv_kernel[(m, triton.cdiv(n, block_n))](
        x2, weight, scale, static_scale if static_scale is not None else scale,
        bias if bias is not None else y, y, n, k_in, scale.stride(0), x2.stride(0), weight.stride(0), y.stride(0),
        BLOCKWISE=block_k is not None, STATIC=static_scale is not None, HAS_BIAS=bias is not None,
        BLOCK_N=block_n, BLOCK_K=bk, num_warps=warps)
    return y.reshape(*x.shape[:-1], n)


@triton.jit
def _quantize_rows_kernel(X, Q, S, K, stride_xm, stride_qm, BLOCK_K: tl.constexpr):
    m = tl.program_id(0)
    offs = tl.arange(0, BLOCK_K)
    mask = offs < K
    x = tl.load(X + m.to(tl.int64) * stride_xm + offs, mask=mask, other=0.0).to(tl.float32)
    scale = tl.maximum(tl.max(tl.abs(x), 0) / 448.0, 1e-12)
    q = tl.clamp(x / scale, -448.0, 448.0).to(tl.float8e4nv)
    tl.store(Q + m.to(tl.int64) * stride_qm + offs, q, mask=mask)
    tl.store(S + m, scale)


def quantize_rows_fp8(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-row dynamic FP8 quantization of x [M, K] (CUDA): (fp8 [M, K], scale float32 [M, 1])."""
    m, k = x.shape
    if x.stride(-1) != 1:
        x = x.contiguous()
    q = torch.empty(m, k, device=x.device, dtype=torch.float8_e4m3fn)
    s = torch.empty(m, 1, device=x.device, dtype=torch.float32)
    if m:
        block = triton.next_power_of_2(k)
        _quantize_rows_kernel[(m,)](x, q, s, k, x.stride(0), q.stride(0), BLOCK_K=block,
                                    num_warps=min(16, max(4, block // 1024)))
    return q, s
